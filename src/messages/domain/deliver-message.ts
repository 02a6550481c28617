/**
 * The delivery use case: delivers one message, exactly once in effect, whatever crashes or overlaps where.
 *
 *   final → finish what a crash may have skipped (refund of a FAILED one, webhook), nothing else;
 *   debit (ledger reference unique per message) → claim (QUEUED/SENDING → SENDING, new attempt number = the fence)
 *   → gateway (idempotency key `<org uid>-<message id>`) → SENT(fenced).
 *   Transient failure with attempts left: QUEUED(fenced) and RetryDelivery (the queue retries with backoff).
 *   Permanent failure, last attempt, or an error of the message's own: FAILED(fenced), then the refund of exactly
 *   what the ledger debited, and PermanentDeliveryFailure.
 *   Infrastructure errors (database, pool, Redis, locks, timeouts) are thrown as they are: the queue postpones.
 *
 * A run that loses a fence (another run took the message over) changes nothing more and answers `superseded`; if the
 * provider accepted its send, the provider's id goes on the row: a row carrying it is never failed, a later run marks
 * it SENT without sending again, and one FAILED meanwhile is turned SENT and charged again (late-acceptance.ts). A
 * provider answering "a request with this key is in progress" (409) postpones the run (DeliveryInProgress), without
 * using up an attempt. Knows nothing of BullMQ: src/messages/entry-points/queue/delivery.processor.ts adapts it.
 */
import { InProgressGatewayError, PermanentGatewayError, type Gateway } from '../gateway/gateway.js';
import { isInfrastructureError } from '../../platform/lib/infrastructure-errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { Metrics } from '../../platform/metrics/metrics.js';
import { type Ledger, type OrgRepository, type ProvisionedOrg, isProvisioned, type TenantDbs } from '../../orgs/index.js';
import { settleLateAcceptance } from './late-acceptance.js';
import { debitReference, refundReference } from './ledger-references.js';
import type { LeanDb } from '../../platform/db/lean-query.js';
import {
  claim,
  markFailed,
  markSent,
  readMessage,
  recordLateAcceptance,
  requeue,
  type MessageState,
} from '../data-access/message-transitions.js';

export { debitReference, lateDebitReference, refundReference } from './ledger-references.js';

export type DeliveryOutcome = 'SENT' | 'FAILED' | 'already-final' | 'superseded' | 'gone';

export interface DeliveryDeps {
  /** Where the org is read (the registry in the workers: cached, invalidated by org events). */
  orgs: Pick<OrgRepository, 'get'>;
  tenantDbs: TenantDbs;
  ledger: Ledger;
  gateway: Gateway;
  logger: Logger;
  metrics?: Pick<Metrics, 'creditsDebited' | 'creditsRefunded' | 'fenceLost' | 'lateAcceptances'>;
  /** Called whenever a message is found or left SENT or FAILED (webhooks hook in here; must be idempotent). */
  onFinal?: (org: ProvisionedOrg, message: { id: number; status: 'SENT' | 'FAILED' }) => Promise<void>;
  /**
   * A debit left the balance below `below` (the most a message can cost), or found it short: `notify` tells every API
   * process (an org event), whose cached balance would otherwise let in messages that cannot be paid until its TTL.
   */
  lowBalance?: { below: number; notify(orgId: number): void };
}

/** One delivery attempt of one message: which message, and where this attempt stands in the budget. */
export interface DeliveryInput {
  orgId: number;
  messageId: number;
  /** Attempts already made (0 on the first). */
  attemptsMade: number;
  maxAttempts: number;
}

/** A transient gateway failure with attempts left: the queue should retry later (with backoff). */
export class RetryDelivery extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message, { cause });
    this.name = 'RetryDelivery';
  }
}

/** The message is FAILED for good (permanent gateway failure, last attempt, or its own error); retrying cannot help. */
export class PermanentDeliveryFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly permanent: boolean,
  ) {
    super(`${code}: ${message}`);
    this.name = 'PermanentDeliveryFailure';
  }
}

/**
 * The provider is still handling another run's request for this message (409 on its idempotency key): wait and try
 * again, without using up an attempt (the queue postpones it, as for an infrastructure error). The message stays
 * SENDING under this run's claim; the other run's acceptance lands on the row as the provider's id, or the next run's
 * resend is answered with it.
 */
export class DeliveryInProgress extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message, { cause });
    this.name = 'DeliveryInProgress';
  }
}

/** The provider's idempotency key: the org's random uid (unique across deployments and restores) and the message id. */
export const providerIdempotencyKey = (org: { uid: string }, messageId: number) => `${org.uid}-${messageId}`;
/** Longest provider message id the row can hold. */
const PROVIDER_ID_MAX = 255;

/** Creates the use case: `deliver(input)` resolves with the outcome, or throws RetryDelivery / PermanentDeliveryFailure. */
export function createDeliverMessage(deps: DeliveryDeps) {
  const { orgs, tenantDbs, ledger, gateway, logger } = deps;

  /** A FAILED message that was charged gets back exactly what the ledger debited, once (also repairs a crash). */
  async function refundIfCharged(orgId: number, messageId: number): Promise<void> {
    const debit = await ledger.find(orgId, debitReference(messageId));
    if (!debit) return;
    const refund = await ledger.apply({ orgId, kind: 'refund', amount: -debit.amount, reference: refundReference(messageId), messageId });
    if (refund.outcome === 'applied') deps.metrics?.creditsRefunded.inc(-debit.amount);
  }

  /** After a FAILED write that changed the row: refund, webhook. */
  async function failed(org: ProvisionedOrg, id: number, code: string): Promise<'FAILED'> {
    await refundIfCharged(org.id, id);
    await deps.onFinal?.(org, { id, status: 'FAILED' });
    logger.warn('message failed', { code });
    return 'FAILED';
  }

  /** A write missed its fence: another run holds the message, or it became final meanwhile. */
  function superseded(step: string): DeliveryOutcome {
    deps.metrics?.fenceLost.inc({ step });
    logger.warn('delivery run superseded: another run holds this message', { step });
    return 'superseded';
  }

  /** The message is final: finish what a crash between its final write and what follows may have skipped. */
  async function finishFinal(org: ProvisionedOrg, db: LeanDb, m: MessageState): Promise<DeliveryOutcome> {
    if (m.status === 'FAILED' && m.providerMessageId !== null) {
      // The provider accepted it after it was failed: SENT and charged once (late-acceptance.ts).
      await settleLateAcceptance(deps, db, org.id, m);
      await deps.onFinal?.(org, { id: m.id, status: 'SENT' });
      return 'already-final';
    }
    if (m.status === 'FAILED') await refundIfCharged(org.id, m.id);
    await deps.onFinal?.(org, { id: m.id, status: m.status as 'SENT' | 'FAILED' });
    return 'already-final';
  }

  /**
   * The provider accepted this run's send, but the run lost its fence: the provider's id goes on the row (the evidence),
   * and a message failed meanwhile by the run that took over is turned SENT and charged once.
   */
  async function lateAcceptance(org: ProvisionedOrg, db: LeanDb, id: number, providerMessageId: string): Promise<DeliveryOutcome> {
    const outcome = superseded('sent');
    await recordLateAcceptance(db, id, providerMessageId);
    const now = await readMessage(db, id);
    if (now?.status === 'FAILED' && now.providerMessageId !== null && (await settleLateAcceptance(deps, db, org.id, now))) {
      await deps.onFinal?.(org, { id, status: 'SENT' });
    }
    return outcome;
  }

  /**
   * A FAILED write of the run holding `attempt` missed: if what stopped it is the provider's id on the row (another run's
   * send was accepted meanwhile), the message is SENT under this run's fence; otherwise another run holds it.
   */
  async function sentByAnotherSend(org: ProvisionedOrg, db: LeanDb, id: number, attempt: number): Promise<DeliveryOutcome> {
    const now = await readMessage(db, id);
    if (now?.status === 'SENDING' && now.attempts === attempt && now.providerMessageId !== null) {
      if (await markSent(db, id, attempt, now.providerMessageId)) {
        await deps.onFinal?.(org, { id, status: 'SENT' });
        logger.info('message sent: the provider had accepted an earlier send', { attempt });
        return 'SENT';
      }
    }
    return superseded('fail');
  }

  async function run(org: ProvisionedOrg, db: LeanDb, input: DeliveryInput): Promise<DeliveryOutcome> {
    const { messageId } = input;
    const m = await readMessage(db, messageId);
    if (!m) return 'gone';
    if (m.status === 'SENT' || m.status === 'FAILED') return finishFinal(org, db, m);
    // A suspension stops what was not sent; a message the provider accepted already (its id on the row) goes on to SENT.
    if (org.status === 'SUSPENDED' && m.providerMessageId === null) {
      if (!(await markFailed(db, messageId, { seen: m.attempts }, 'ORG_SUSPENDED', 'the organisation is suspended')))
        return superseded('fail');
      return failed(org, messageId, 'ORG_SUSPENDED');
    }

    const debit = await ledger.apply({ orgId: org.id, kind: 'debit', amount: -m.cost, reference: debitReference(messageId), messageId });
    if (debit.outcome === 'applied') deps.metrics?.creditsDebited.inc(m.cost);
    if ((debit.outcome === 'applied' && debit.entry.balanceAfter < (deps.lowBalance?.below ?? 0)) || debit.outcome === 'insufficient')
      deps.lowBalance?.notify(org.id);
    if (debit.outcome === 'insufficient' || debit.outcome === 'no-org') {
      const text = `the balance is below the cost of ${m.cost} credit(s)`;
      if (!(await markFailed(db, messageId, { seen: m.attempts }, 'INSUFFICIENT_CREDITS', text))) return superseded('fail');
      return failed(org, messageId, 'INSUFFICIENT_CREDITS');
    }

    const attempt = await claim(db, messageId);
    if (attempt === undefined) {
      // Final since we read it: an overlapping run finished it. Finish what follows (idempotently), nothing more.
      superseded('claim');
      const now = await readMessage(db, messageId);
      if (now) await finishFinal(org, db, now);
      return 'superseded';
    }

    let providerMessageId: string;
    try {
      // An earlier send was accepted (its run lost the fence before it could mark it SENT): no need to send again.
      ({ providerMessageId } =
        m.providerMessageId !== null
          ? { providerMessageId: m.providerMessageId }
          : await gateway.send({
              idempotencyKey: providerIdempotencyKey(org, messageId),
              to: m.to,
              channel: m.channel,
              body: m.body,
              org: { id: org.id, name: org.name },
            }));
      if (providerMessageId.length > PROVIDER_ID_MAX) {
        throw new PermanentGatewayError('PROVIDER_BAD_RESPONSE', `the provider's message id is longer than ${PROVIDER_ID_MAX} characters`);
      }
    } catch (err) {
      // Another run's request for this message is still with the provider: not an answer about the message.
      if (err instanceof InProgressGatewayError) throw new DeliveryInProgress(err);
      const e = err as Error & { code?: string };
      const permanent = err instanceof PermanentGatewayError;
      const code = e.code ?? 'GATEWAY_ERROR';
      const last = input.attemptsMade + 1 >= input.maxAttempts;
      if (permanent || last) {
        if (!(await markFailed(db, messageId, { attempt }, code, e.message))) return sentByAnotherSend(org, db, messageId, attempt);
        await failed(org, messageId, code);
        // The job fails too (kept for inspection), without further attempts.
        throw new PermanentDeliveryFailure(code, e.message, permanent);
      }
      if (!(await requeue(db, messageId, attempt, code, e.message))) return superseded('requeue');
      logger.info('message will be retried', { code, attempt });
      throw new RetryDelivery(e);
    }
    // The provider has it. Should this write fail, the retry resends with the same idempotency key: never a refund.
    if (!(await markSent(db, messageId, attempt, providerMessageId))) return lateAcceptance(org, db, messageId, providerMessageId);
    await deps.onFinal?.(org, { id: messageId, status: 'SENT' });
    logger.info('message sent', { attempt });
    return 'SENT';
  }

  /**
   * An error that is neither the gateway's nor the infrastructure's (bad data, a bug) fails the message with
   * DELIVERY_ERROR, refunded, rather than retrying it for ever.
   */
  async function failOnOwnError(org: ProvisionedOrg, db: LeanDb, input: DeliveryInput, err: unknown): Promise<never> {
    const text = `${(err as Error).name ?? 'Error'}: ${(err as Error).message ?? String(err)}`;
    logger.error('delivery failed on an error of its own', { err: text });
    const m = await readMessage(db, input.messageId);
    if (
      m &&
      (m.status === 'QUEUED' || m.status === 'SENDING') &&
      (await markFailed(db, input.messageId, { seen: m.attempts }, 'DELIVERY_ERROR', text))
    ) {
      await failed(org, input.messageId, 'DELIVERY_ERROR');
    }
    throw new PermanentDeliveryFailure('DELIVERY_ERROR', text, true);
  }

  return async function deliver(input: DeliveryInput): Promise<DeliveryOutcome> {
    // Read the org now, not from the job: its credentials or status may have changed since the job was queued.
    const org = await orgs.get(input.orgId);
    if (!org || org.status === 'DELETED' || !isProvisioned(org)) return 'gone';
    return tenantDbs.withTenant(org, async (db) => {
      try {
        return await run(org, db, input);
      } catch (err) {
        if (
          err instanceof RetryDelivery ||
          err instanceof PermanentDeliveryFailure ||
          err instanceof DeliveryInProgress ||
          isInfrastructureError(err)
        )
          throw err;
        return failOnOwnError(org, db, input, err);
      }
    });
  };
}

export type DeliverMessage = ReturnType<typeof createDeliverMessage>;
