/**
 * The BullMQ adapter of the delivery use case: job → DeliveryInput, and the use case's answers → BullMQ's control flow.
 * RetryDelivery → throw the gateway error (BullMQ retries with backoff); PermanentDeliveryFailure → UnrecoverableError.
 * An infrastructure error postpones the job without using up an attempt (backoff doubling up to a minute), at most
 * `maxPostponements` times: then the job fails with an alert-worthy log line and metric, and the message row (still
 * QUEUED or SENDING) is the reconciler's to enqueue again once its age passes RECONCILE_AFTER_MS.
 */
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { PermanentDeliveryFailure, RetryDelivery, type DeliverMessage, type DeliveryOutcome } from '../../domain/deliver-message.js';
import { runWithContext } from '../../../platform/lib/context.js';
import type { Logger } from '../../../platform/lib/logger.js';
import type { Metrics } from '../../../platform/metrics/metrics.js';
import type { DeliveryJob } from '../../../platform/queue/queues.js';

export interface DeliveryWorkerOptions {
  logger: Logger;
  /** First wait after an infrastructure error. */
  outageBackoffMs: number;
  maxPostponements: number;
  metrics?: Pick<Metrics, 'deliveryPostponed' | 'postponementsExhausted'>;
}

export function deliveryProcessor(deliver: DeliverMessage, opts: DeliveryWorkerOptions) {
  return async function process(job: Job<DeliveryJob>, token?: string): Promise<DeliveryOutcome> {
    const { orgId, messageId } = job.data;
    return runWithContext({ jobId: job.id, orgId, messageId }, async () => {
      try {
        return await deliver({ orgId, messageId, attemptsMade: job.attemptsMade, maxAttempts: job.opts.attempts ?? 1 });
      } catch (err) {
        if (err instanceof RetryDelivery) throw err.cause;
        if (err instanceof PermanentDeliveryFailure) throw new UnrecoverableError(err.message);
        if (!token) throw err;
        const outages = (job.data.outages ?? 0) + 1;
        if (outages > opts.maxPostponements) {
          opts.metrics?.postponementsExhausted.inc();
          opts.logger.error('ALERT delivery postponements exhausted: the job fails and the reconciler will enqueue the message again', {
            err: (err as Error).message,
            outages: outages - 1,
          });
          throw new UnrecoverableError(`postponed ${outages - 1} times by infrastructure errors: ${(err as Error).message}`);
        }
        // A database, pool or Redis problem is not the message's fault: wait and try again without using up an attempt.
        const delay = Math.min(60_000, opts.outageBackoffMs * 2 ** Math.min(outages - 1, 10));
        opts.metrics?.deliveryPostponed.inc();
        opts.logger.warn('delivery postponed: infrastructure error', { err: (err as Error).message, outages, delayMs: delay });
        await job.updateData({ ...job.data, outages });
        await job.moveToDelayed(Date.now() + delay, token);
        throw new DelayedError();
      }
    });
  };
}
