/**
 * Delivers one message, exactly once in effect, whatever crashes where:
 * final → nothing; debit (unique reference) → SENDING → gateway (message id as idempotency key) → SENT.
 * Transient failure: retry (BullMQ backoff). Permanent failure or last attempt: FAILED, then refund (unique reference).
 */
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Ledger } from '../src/credits/ledger.js';
import { PermanentGatewayError, type Gateway } from '../src/gateway/gateway.js';
import type { Logger } from '../src/lib/logger.js';
import type { Metrics } from '../src/metrics/metrics.js';
import { runWithContext } from '../src/lib/context.js';
import { messageModel, type Message } from '../src/messages/message.model.js';
import type { DeliveryJob } from '../src/queue/queues.js';
import type { OrgRecord, OrgRepository } from '../src/tenancy/org.repository.js';
import type { TenantPoolCache } from '../src/tenancy/pool-cache.js';

export type DeliveryOutcome = 'SENT' | 'FAILED' | 'already-final' | 'gone';

export interface DeliveryDeps {
  repo: OrgRepository;
  pools: TenantPoolCache;
  ledger: Ledger;
  gateway: Gateway;
  logger: Logger;
  metrics?: Pick<Metrics, 'creditsDebited' | 'creditsRefunded'>;
  /** First wait after an infrastructure error (it doubles on each one, up to a minute). */
  outageBackoffMs: number;
  /** Called whenever a message is found or left SENT or FAILED (webhooks hook in here; must be idempotent). */
  onFinal?: (org: OrgRecord, message: Message) => Promise<void>;
}

export const debitReference = (messageId: number) => `debit:message:${messageId}`;
export const refundReference = (messageId: number) => `refund:message:${messageId}`;

/** Creates the BullMQ processor function. */
export function createDeliveryProcessor(deps: DeliveryDeps) {
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
  async function attempt(job: Job<DeliveryJob>): Promise<DeliveryOutcome> {
    const { orgId, messageId } = job.data;
    // Read the org fresh: its credentials or status may have changed since the job was queued.
    const org = await repo.get(orgId);
    if (!org || org.status === 'DELETED' || !org.dbName) return 'gone';
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
        ({ providerMessageId } = await gateway.send({ idempotencyKey: `${orgId}-${messageId}`, to: m.to, channel: m.channel, body: m.body }));
      } catch (err) {
        const e = err as Error & { code?: string };
        const code = e.code ?? 'GATEWAY_ERROR';
        const permanent = err instanceof PermanentGatewayError;
        const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        if (permanent || last) {
          await fail(org, m, code, e.message);
          logger.warn('message failed', { code, permanent, attempts: m.attempts });
          throw permanent ? new UnrecoverableError(`${code}: ${e.message}`) : new GatewayAttemptError(e);
        }
        await m.update({ status: 'QUEUED', errorCode: code, errorText: e.message.slice(0, 1000) });
        logger.info('message will be retried', { code, attempts: m.attempts });
        throw new GatewayAttemptError(e);
      }
      // The provider has it. Should this write fail, the retry resends with the same idempotency key: never a refund.
      await m.update({ status: 'SENT', providerMessageId, sentAt: new Date(), errorCode: null, errorText: null });
      await deps.onFinal?.(org, m);
      logger.info('message sent', { attempts: m.attempts });
      return 'SENT';
    });
  }

  return async function deliver(job: Job<DeliveryJob>, token?: string): Promise<DeliveryOutcome> {
    const { orgId, messageId } = job.data;
    return runWithContext({ jobId: job.id, orgId, messageId }, async () => {
      try {
        return await attempt(job);
      } catch (err) {
        if (err instanceof GatewayAttemptError) throw err.cause;
        if (err instanceof UnrecoverableError || !token) throw err;
        // A database, pool or Redis problem is not the message's fault: wait and try again without using up an
        // attempt, for as long as it takes (backoff doubles up to about a minute).
        const outages = (job.data.outages ?? 0) + 1;
        const delay = Math.min(60_000, deps.outageBackoffMs * 2 ** Math.min(outages - 1, 10));
        logger.warn('delivery postponed: infrastructure error', { err: (err as Error).message, outages, delayMs: delay });
        await job.updateData({ ...job.data, outages });
        await job.moveToDelayed(Date.now() + delay, token);
        throw new DelayedError();
      }
    });
  };
}

/** Marks a gateway failure on its way out of attempt(), so it is not mistaken for an infrastructure error. */
class GatewayAttemptError extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message, { cause });
  }
}
