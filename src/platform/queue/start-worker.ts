/** Starts one BullMQ worker with the project's conventions: own connection, prefix, error logging, idempotent close. */
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, type Processor } from 'bullmq';
import { createRedis } from '../lib/redis.js';
import type { Config } from '../../../config/config.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { tracing } from '../telemetry/tracing.js';

export interface RunningWorker<T, R> {
  worker: Worker<T, R>;
  /**
   * Stops taking jobs, waits for the active ones to finish (past `deadlineMs`, stops waiting: their locks lapse and
   * another worker takes them over, which the fenced delivery makes safe), closes its Redis connection.
   */
  close(deadlineMs?: number): Promise<void>;
}

/** Starts a worker on queue `name` (it begins taking jobs at once). */
export function startWorker<T, R>(
  config: Config,
  name: string,
  processor: Processor<T, R>,
  opts: { concurrency: number; logger: Logger; metrics?: Metrics },
): RunningWorker<T, R> {
  const connection = createRedis(config, 'blocking');
  connection.on('error', (err: Error) => opts.logger.debug('worker redis error', { queue: name, err: err.message }));
  const worker = new Worker<T, R>(name, tracing.processor(processor), {
    connection,
    telemetry: tracing.bullmq,
    prefix: config.queuePrefix,
    concurrency: opts.concurrency,
    // A job whose worker died is picked up again once its lock expires; several times, as every pickup is idempotent.
    lockDuration: config.delivery.lockMs,
    stalledInterval: config.delivery.lockMs,
    maxStalledCount: 10,
  });
  worker.on('error', (err) => opts.logger.error('worker error', { queue: name, err: err.message }));
  worker.on('completed', () => opts.metrics?.jobsCompleted.inc({ queue: name }));
  worker.on('failed', () => opts.metrics?.jobsFailed.inc({ queue: name }));
  let closing: Promise<void> | undefined;
  return {
    worker,
    close(deadlineMs) {
      closing ??= (async () => {
        const graceful = worker.close();
        if (deadlineMs === undefined) await graceful;
        else if ((await Promise.race([graceful.then(() => true), sleep(deadlineMs).then(() => false)])) === false) {
          opts.logger.warn('worker did not finish its active jobs in time: closing anyway', { queue: name, deadlineMs });
          await worker.close(true);
        }
      })().finally(() => connection.disconnect());
      return closing;
    },
  };
}
