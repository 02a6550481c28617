/** The project's BullMQ queues: producer clients that fail fast, job ids derived from what they are about, ids-only payloads. */
import { Queue, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { createNextTurn } from '../lib/batch.js';
import { createRedis } from '../lib/redis.js';
import type { Config } from '../../../config/config.js';
import { withTimeout } from '../lib/timeout.js';
import { tracing } from '../telemetry/tracing.js';

export const DELIVERY_QUEUE = 'deliveries';
export const WEBHOOK_QUEUE = 'webhooks';

export interface DeliveryJob {
  orgId: number;
  messageId: number;
  /** Infrastructure errors met so far (they postpone the job without using up an attempt). */
  outages?: number;
}

export interface WebhookJob {
  orgId: number;
  messageId: number;
  status: 'SENT' | 'FAILED';
}

/** The job id of a message: one job per (org, message), so a message can never be enqueued twice. */
export const deliveryJobId = (orgId: number, messageId: number) => `msg-${orgId}-${messageId}`;
/** One webhook per (org, message, final status); also the `webhook-id` receivers dedupe on. */
export const webhookJobId = (j: WebhookJob) => `wh-${j.orgId}-${j.messageId}-${j.status.toLowerCase()}`;

export interface ProducerQueue<T> {
  queue: Queue<T>;
  /**
   * Runs `send` with the connection's socket corked until the promise reactions it started have run (HOLD_MICROTASKS),
   * so the commands it starts (BullMQ's adds reach the socket a promise hop later) leave in one write, within the same
   * task. Redis Cluster, or a connection not ready: `send` as it is.
   */
  holdWrites(send: () => void): void;
  /** Closes the queue and its connection; bounded even when Redis is unreachable. */
  close(): Promise<void>;
}

const noop = () => undefined;
/**
 * How long `holdWrites` holds the socket: this many turns of the microtask queue, still within the task that sent the
 * commands. BullMQ's add (without telemetry) writes its command within one turn (test/platform/delivery-enqueuer.test.ts
 * fails if the hold is released at once); a command that needs more, or waits for I/O (BullMQ's first start-up), merely
 * leaves in a write of its own.
 */
const HOLD_MICROTASKS = 16;
/** Runs `fn` after `n` turns of the microtask queue: after whatever the current task started that gets there in fewer. */
function afterMicrotasks(n: number, fn: () => void): void {
  let p: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < n; i++) p = p.then(noop);
  void p.then(fn);
}

/** A producer-side queue whose client fails fast when Redis is down (no offline buffering). */
export function createProducerQueue<T>(config: Config, name: string, defaultJobOptions: JobsOptions): ProducerQueue<T> {
  const connection = createRedis(config, 'producer');
  connection.on('error', () => undefined);
  const queue = new Queue<T>(name, { connection, prefix: config.queuePrefix, defaultJobOptions, telemetry: tracing.bullmq });
  // Without a listener BullMQ prints every connection error; a failed add is reported where it happens.
  queue.on('error', () => undefined);
  return {
    queue,
    holdWrites: (send) => {
      const stream = connection instanceof Redis && connection.status === 'ready' ? connection.stream : undefined;
      if (!stream) return send();
      stream.cork();
      try {
        send();
      } finally {
        afterMicrotasks(HOLD_MICROTASKS, () => stream.uncork());
      }
    },
    async close() {
      // BullMQ neither closes a connection it was given nor settles close() while Redis is down.
      await withTimeout(queue.close(), 2000, 'queue close').catch(() => undefined);
      connection.disconnect();
    },
  };
}

/** Deliveries: retried with exponential backoff and jitter; completed jobs trimmed, failed ones kept for a bounded time. */
export function createDeliveryQueue(config: Config): ProducerQueue<DeliveryJob> {
  return createProducerQueue<DeliveryJob>(config, DELIVERY_QUEUE, {
    attempts: config.delivery.attempts,
    backoff: { type: 'exponential', delay: config.delivery.backoffMs, jitter: 0.5 },
    removeOnComplete: { count: 1000 },
    // The message row is the record; a failed job is for inspection and must not grow Redis without bound.
    removeOnFail: { count: config.failedJobs.keepCount, age: config.failedJobs.keepAgeSec },
  });
}

/** Status webhooks: their own queue, so a failing endpoint never holds up deliveries. */
export function createWebhookQueue(config: Config): ProducerQueue<WebhookJob> {
  return createProducerQueue<WebhookJob>(config, WEBHOOK_QUEUE, {
    attempts: config.webhooks.attempts,
    backoff: { type: 'exponential', delay: config.webhooks.backoffMs, jitter: 0.5 },
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: config.failedJobs.keepCount, age: config.failedJobs.keepAgeSec },
  });
}

/**
 * Adds the delivery job of a message, failing within `timeoutMs` if Redis cannot take it. `priority` (1 first) comes
 * from the org's fair share (src/platform/queue/fair-share.ts); a job without one (a repair) runs before every prioritized job.
 */
export async function enqueueDelivery(queue: Queue<DeliveryJob>, job: DeliveryJob, priority?: number, timeoutMs = 2000): Promise<void> {
  await withTimeout(queue.add('deliver', job, { jobId: deliveryJobId(job.orgId, job.messageId), priority }), timeoutMs, 'enqueue');
}

/** Adds a message's delivery job at its fair-share priority; fails within the enqueuer's timeout if Redis cannot take it. */
export type DeliveryEnqueuer = (job: DeliveryJob, priority?: number) => Promise<void>;

/**
 * `enqueueDelivery` for the hot path: the adds asked for while the process handles one batch of ready sockets (under
 * load, the INSERTs of several requests answer in one) are sent together once that batch is done (`createNextTurn`),
 * with the queue connection's socket corked while they are started (`holdWrites`), so they leave in one write to Redis
 * where each would be a write of its own: on a loopback socket a write costs the writer more than the add's own work
 * (docs/benchmarks.md). Each add is still its own `queue.add` with its own answer and timeout. With tracing on, each add
 * is sent at once from its request's context, so its job carries that request's trace.
 */
export function createDeliveryEnqueuer(
  producer: Pick<ProducerQueue<DeliveryJob>, 'queue' | 'holdWrites'>,
  timeoutMs = 2000,
): DeliveryEnqueuer {
  const together = createNextTurn((sendAll) => producer.holdWrites(sendAll));
  return (job, priority) => {
    const add = () => enqueueDelivery(producer.queue, job, priority, timeoutMs);
    return tracing.enabled ? add() : together(add);
  };
}

/**
 * Makes sure a message has a live delivery job: adds it when there is none, and replaces a finished (completed or
 * failed) one, since BullMQ ignores an add whose id exists in any state. For the reconciler and idempotent replays:
 * a repaired job has no priority, so it runs before every prioritized one: it has waited long enough.
 */
export async function ensureDeliveryJob(
  queue: Queue<DeliveryJob>,
  orgId: number,
  messageId: number,
  timeoutMs = 2000,
): Promise<'added' | 'live'> {
  const job = await withTimeout(queue.getJob(deliveryJobId(orgId, messageId)), timeoutMs, 'get job');
  if (job) {
    const state = await withTimeout(job.getState(), timeoutMs, 'job state');
    if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return 'live';
    await withTimeout(job.remove(), timeoutMs, 'remove job');
  }
  await enqueueDelivery(queue, { orgId, messageId }, undefined, timeoutMs);
  return 'added';
}

/** Adds a webhook job (at most one per message and final status), at the org's fair-share priority. */
export async function enqueueWebhook(queue: Queue<WebhookJob>, job: WebhookJob, priority?: number, timeoutMs = 2000): Promise<void> {
  await withTimeout(queue.add('notify', job, { jobId: webhookJobId(job), priority }), timeoutMs, 'enqueue webhook');
}
