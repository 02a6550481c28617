/** The delivery worker: a BullMQ Worker over the delivery queue; close() lets active jobs finish. */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../config/config.js';
import type { Logger } from '../src/lib/logger.js';
import { DELIVERY_QUEUE, type DeliveryJob } from '../src/queue/delivery-queue.js';
import { createDeliveryProcessor, type DeliveryDeps, type DeliveryOutcome } from './delivery.processor.js';

export interface DeliveryWorker {
  worker: Worker<DeliveryJob, DeliveryOutcome>;
  /** Stops taking jobs, waits for the active ones to finish, closes its Redis connection. */
  close(): Promise<void>;
}

/** Starts a worker (it begins taking jobs at once). */
export function startDeliveryWorker(config: Config, deps: DeliveryDeps, logger: Logger): DeliveryWorker {
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  connection.on('error', (err: Error) => logger.debug('worker redis error', { err: err.message }));
  const worker = new Worker<DeliveryJob, DeliveryOutcome>(DELIVERY_QUEUE, createDeliveryProcessor(deps), {
    connection,
    prefix: config.queuePrefix,
    concurrency: config.delivery.concurrency,
    // A job whose worker died is picked up again; several times, as each pickup is idempotent.
    maxStalledCount: 10,
  });
  worker.on('error', (err) => logger.error('delivery worker error', { err: err.message }));
  let closing: Promise<void> | undefined;
  return {
    worker,
    close() {
      closing ??= worker.close().finally(() => connection.disconnect());
      return closing;
    },
  };
}
