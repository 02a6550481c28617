/**
 * A late acceptance: the provider accepted a send after the message was marked FAILED (an overlapping run failed it
 * while this run's request was still in the provider's hands) and, most likely, refunded. The provider delivered it,
 * so it ends SENT and charged exactly once.
 *
 * The order makes every step repeatable and every interleaving converge (the run that failed the message may still be
 * about to refund it; a crash may stop anywhere):
 *   1. the provider's id is on the row (recordLateAcceptance, before this): a FAILED row with a provider id is the
 *      durable evidence; the reconciler finds it and runs this again if anything below is cut off;
 *   2. the ledger: the refund is applied if it was not (a duplicate if the failing run got there first, and then its
 *      own later attempt is the duplicate), then the late debit, each under its own unique reference: debit + refund
 *      + late debit = charged once, whoever applied what when;
 *   3. FAILED → SENT (conditional on FAILED: a second repair changes nothing).
 * If the balance cannot cover the late debit (the refunded credit was spent meanwhile), the balance never goes below
 * zero: the message still ends SENT (it was delivered), uncharged, with an ALERT line and a metric.
 */
import type { Ledger } from '../../orgs/index.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { Metrics } from '../../platform/metrics/metrics.js';
import { debitReference, lateDebitReference, refundReference } from './ledger-references.js';
import { markSentAfterFailure } from '../data-access/message-transitions.js';
import type { LeanDb } from '../../platform/db/lean-query.js';

export interface LateAcceptanceDeps {
  ledger: Ledger;
  logger: Logger;
  metrics?: Pick<Metrics, 'creditsDebited' | 'creditsRefunded' | 'lateAcceptances'>;
}

/** Charges the message once more if its charge was refunded; answers whether it is charged (false: the balance was short). */
export async function chargeAcceptedMessage(deps: LateAcceptanceDeps, orgId: number, messageId: number, cost: number): Promise<boolean> {
  const { ledger } = deps;
  const debit = await ledger.find(orgId, debitReference(messageId));
  const amount = debit ? debit.amount : -cost;
  if (debit) {
    const refund = await ledger.apply({ orgId, kind: 'refund', amount: -debit.amount, reference: refundReference(messageId), messageId });
    if (refund.outcome === 'applied') deps.metrics?.creditsRefunded.inc(-debit.amount);
  }
  const late = await ledger.apply({ orgId, kind: 'debit', amount, reference: lateDebitReference(messageId), messageId });
  if (late.outcome === 'applied') deps.metrics?.creditsDebited.inc(-amount);
  return late.outcome === 'applied' || late.outcome === 'duplicate';
}

/**
 * Settles a FAILED message whose row carries the provider's id (step 2 and 3 above); answers true when this call
 * turned it SENT (the caller then sends the SENT webhook), false when it was SENT already.
 */
export async function settleLateAcceptance(
  deps: LateAcceptanceDeps,
  db: LeanDb,
  orgId: number,
  message: { id: number; cost: number },
): Promise<boolean> {
  const charged = await chargeAcceptedMessage(deps, orgId, message.id, message.cost);
  if (!charged) {
    deps.logger.error(
      'ALERT a message the provider accepted after it was FAILED could not be charged again: the balance is below its cost',
      {
        messageId: message.id,
        cost: message.cost,
      },
    );
  }
  const turned = await markSentAfterFailure(db, message.id);
  if (turned) {
    deps.metrics?.lateAcceptances.inc({ outcome: charged ? 'charged' : 'uncharged' });
    deps.logger.warn('late acceptance: a FAILED message the provider accepted is SENT now', { messageId: message.id, charged });
  }
  return turned;
}
