/**
 * The delivery use case: delivers one message, exactly once in effect, whatever crashes where:
 * final → nothing; debit (unique reference) → SENDING → gateway (message id as idempotency key) → SENT.
 * Transient failure: RetryDelivery (the queue retries with backoff). Permanent failure or last attempt: FAILED, then
 * refund (unique reference), and PermanentDeliveryFailure. Any other error is the infrastructure's: the queue postpones.
 * Knows nothing of BullMQ: workers/delivery.worker.ts adapts it.
 */
import type { Ledger } from '../credits/ledger.js';
import { PermanentGatewayError, type Gateway } from '../gateway/gateway.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { messageModel, type Message } from '../messages/message.model.js';
import { isProvisioned, type OrgRecord } from '../orgs/org.js';
import type { OrgRepository } from '../orgs/org.repository.js';
import type { TenantPoolCache } from '../tenant-db/pool-cache.js';

export type DeliveryOutcome = 'SENT' | 'FAILED' | 'already-final' | 'gone';

export interface DeliveryDeps {
  repo: OrgRepository;
  pools: TenantPoolCache;
  ledger: Ledger;
  gateway: Gateway;
  logger: Logger;
  metrics?: Pick<Metrics, 'creditsDebited' | 'creditsRefunded'>;
  /** Called whenever a message is found or left SENT or FAILED (webhooks hook in here; must be idempotent). */
  onFinal?: (org: OrgRecord, message: Message) => Promise<void>;
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

/** The message is FAILED for good (permanent gateway failure or last attempt); retrying cannot help. */
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

export const debitReference = (messageId: number) => `debit:message:${messageId}`;
export const refundReference = (messageId: number) => `refund:message:${messageId}`;

/** Creates the use case: `deliver(input)` resolves with the outcome, or throws RetryDelivery / PermanentDeliveryFailure. */
export function createDeliverMessage(deps: DeliveryDeps) {
  const { repo, pools, ledger, gateway, logger } = deps;

  /** A FAILED message that was charged gets its credits back, once (also repairs a crash between the two). */
  async function refundIfCharged(orgId: number, m: Message): Promise<void> {
    const id = Number(m.id);
    if (!(await ledger.find(orgId, debitReference(id)))) return;
    const refund = await ledger.apply({ orgId, kind: 'refund', amount: m.cost, reference: refundReference(id), messageId: id });
    if (refund.outcome === 'applied') deps.metrics?.creditsRefunded.inc(m.cost);
  }

  async function fail(org: OrgRecord, m: Message, code: string, text: string): Promise<void> {
    await m.update({ status: 'FAILED', errorCode: code, errorText: text.slice(0, 1000) });
    await refundIfCharged(org.id, m);
    await deps.onFinal?.(org, m);
  }

  /** The delivery itself; every error it throws that is not a gateway failure is an infrastructure error. */
  async function attempt(input: DeliveryInput): Promise<DeliveryOutcome> {
    const { orgId, messageId } = input;
    // Read the org fresh: its credentials or status may have changed since the job was queued.
    const org = await repo.get(orgId);
    if (!org || org.status === 'DELETED' || !isProvisioned(org)) return 'gone';
    return pools.withTenant(org, async (db) => {
      const m = await messageModel(db).findByPk(messageId);
      if (!m) return 'gone';
      if (m.status === 'SENT' || m.status === 'FAILED') {
        // A crash may have come between the final update and what follows it: finish that, once.
        if (m.status === 'FAILED') await refundIfCharged(orgId, m);
        await deps.onFinal?.(org, m);
        return 'already-final';
      }
      if (org.status === 'SUSPENDED') {
        await fail(org, m, 'ORG_SUSPENDED', 'the organisation is suspended');
        return 'FAILED';
      }
      const debit = await ledger.apply({ orgId, kind: 'debit', amount: -m.cost, reference: debitReference(messageId), messageId });
      if (debit.outcome === 'applied') deps.metrics?.creditsDebited.inc(m.cost);
      if (debit.outcome === 'insufficient' || debit.outcome === 'no-org') {
        await fail(org, m, 'INSUFFICIENT_CREDITS', `the balance is below the cost of ${m.cost} credit(s)`);
        return 'FAILED';
      }
      await m.update({ status: 'SENDING', attempts: m.attempts + 1 });
      let providerMessageId: string;
      try {
        ({ providerMessageId } = await gateway.send({
          idempotencyKey: `${orgId}-${messageId}`,
          to: m.to,
          channel: m.channel,
          body: m.body,
        }));
      } catch (err) {
        const e = err as Error & { code?: string };
        const code = e.code ?? 'GATEWAY_ERROR';
        const permanent = err instanceof PermanentGatewayError;
        const last = input.attemptsMade + 1 >= input.maxAttempts;
        if (permanent || last) {
          await fail(org, m, code, e.message);
          logger.warn('message failed', { code, permanent, attempts: m.attempts });
          throw new PermanentDeliveryFailure(code, e.message, permanent);
        }
        await m.update({ status: 'QUEUED', errorCode: code, errorText: e.message.slice(0, 1000) });
        logger.info('message will be retried', { code, attempts: m.attempts });
        throw new RetryDelivery(e);
      }
      // The provider has it. Should this write fail, the retry resends with the same idempotency key: never a refund.
      await m.update({ status: 'SENT', providerMessageId, sentAt: new Date(), errorCode: null, errorText: null });
      await deps.onFinal?.(org, m);
      logger.info('message sent', { attempts: m.attempts });
      return 'SENT';
    });
  }

  return attempt;
}

export type DeliverMessage = ReturnType<typeof createDeliverMessage>;
