/** The delivery queue (BullMQ): job ids derived from (org, message), payloads of ids only. */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../../config/config.js';
import { withTimeout } from '../lib/timeout.js';

export const DELIVERY_QUEUE = 'deliveries';

export interface DeliveryJob {
  orgId: number;
  messageId: number;
}

/** The job id of a message: one job per (org, message), so a message can never be enqueued twice. */
export const deliveryJobId = (orgId: number, messageId: number) => `msg-${orgId}-${messageId}`;

export interface DeliveryQueue {
  queue: Queue<DeliveryJob>;
  /** Closes the queue and its connection; bounded even when Redis is unreachable. */
  close(): Promise<void>;
}

/** A producer-side queue whose client fails fast when Redis is down (no offline buffering). */
export function createDeliveryQueue(config: Config): DeliveryQueue {
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null, enableOfflineQueue: false, connectTimeout: 1000 });
  connection.on('error', () => undefined);
  const queue = new Queue<DeliveryJob>(DELIVERY_QUEUE, {
    connection,
    prefix: config.queuePrefix,
    defaultJobOptions: {
      attempts: config.delivery.attempts,
      backoff: { type: 'exponential', delay: config.delivery.backoffMs, jitter: 0.5 },
      removeOnComplete: { count: 1000 },
      removeOnFail: false,
    },
  });
  // Without a listener BullMQ prints every connection error; a failed add is reported where it happens.
  queue.on('error', () => undefined);
  return {
    queue,
    async close() {
      // BullMQ neither closes a connection it was given nor settles close() while Redis is down.
      await withTimeout(queue.close(), 2000, 'queue close').catch(() => undefined);
      connection.disconnect();
    },
  };
}

/** Adds the delivery job of a message, failing within `timeoutMs` if Redis cannot take it. */
export async function enqueueDelivery(queue: Queue<DeliveryJob>, job: DeliveryJob, timeoutMs = 2000): Promise<void> {
  await withTimeout(queue.add('deliver', job, { jobId: deliveryJobId(job.orgId, job.messageId) }), timeoutMs, 'enqueue');
}
