/**
 * The ledger references of a message, unique per org (credit_ledger's unique key): each charge or refund of a message
 * is applied at most once, whoever applies it (the run, a later run, the reconciler's repair).
 *
 *   debit       the charge taken before the first send
 *   refund      its negation, when the message ends FAILED
 *   late-debit  the charge taken again when the provider's acceptance arrives after the message was FAILED and refunded
 */
export const debitReference = (messageId: number) => `debit:message:${messageId}`;
export const refundReference = (messageId: number) => `refund:message:${messageId}`;
export const lateDebitReference = (messageId: number) => `late-debit:message:${messageId}`;
