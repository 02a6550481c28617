/**
 * The BullMQ adapter of the delivery use case: job → DeliveryInput, and the use case's answers → BullMQ's control flow.
 * RetryDelivery → throw the gateway error (BullMQ retries with backoff); PermanentDeliveryFailure → UnrecoverableError;
 * anything else is an infrastructure error: postpone without using up an attempt.
 */
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { PermanentDeliveryFailure, RetryDelivery, type DeliverMessage, type DeliveryOutcome } from '../src/delivery/deliver-message.js';
import { runWithContext } from '../src/lib/context.js';
import type { Logger } from '../src/lib/logger.js';
import type { DeliveryJob } from '../src/queue/queues.js';

/** Creates the processor of the deliveries queue. `outageBackoffMs` is the first wait after an infrastructure error. */
export function deliveryProcessor(deliver: DeliverMessage, opts: { logger: Logger; outageBackoffMs: number }) {
  return async function process(job: Job<DeliveryJob>, token?: string): Promise<DeliveryOutcome> {
    const { orgId, messageId } = job.data;
    return runWithContext({ jobId: job.id, orgId, messageId }, async () => {
      try {
        return await deliver({ orgId, messageId, attemptsMade: job.attemptsMade, maxAttempts: job.opts.attempts ?? 1 });
      } catch (err) {
        if (err instanceof RetryDelivery) throw err.cause;
        if (err instanceof PermanentDeliveryFailure) throw new UnrecoverableError(err.message);
        if (!token) throw err;
        // A database, pool or Redis problem is not the message's fault: wait and try again without using up an
        // attempt, for as long as it takes (backoff doubles up to about a minute).
        const outages = (job.data.outages ?? 0) + 1;
        const delay = Math.min(60_000, opts.outageBackoffMs * 2 ** Math.min(outages - 1, 10));
        opts.logger.warn('delivery postponed: infrastructure error', { err: (err as Error).message, outages, delayMs: delay });
        await job.updateData({ ...job.data, outages });
        await job.moveToDelayed(Date.now() + delay, token);
        throw new DelayedError();
      }
    });
  };
}
