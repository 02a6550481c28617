/**
 * Holds a queue's jobs to their org's concurrency (src/queue/org-slots.ts) around any processor: a job runs in one of
 * its org's slots, or is parked in BullMQ's delayed set until a finishing job of the org wakes it (promote). The cap
 * is about sharing the workers, not about safety: while Redis cannot answer the slot check, jobs run ungated.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError, type Job, type Processor } from 'bullmq';
import type { Logger } from '../src/lib/logger.js';
import type { OrgSlots } from '../src/queue/org-slots.js';

export interface OrgGateOptions {
  slots: OrgSlots;
  /** The org's cap now (0: none). */
  limitOf(orgId: number): Promise<number>;
  /** Moves a delayed job to the queue (BullMQ promote); rejects when the job is not delayed. */
  promote(jobId: string): Promise<void>;
  /** Longest a parked job waits before it wakes by itself, should its wake-up be lost. */
  maxParkMs: number;
  logger: Logger;
  onParked?: () => void;
}

/** Wraps `processor` so that each org has at most its cap of jobs running, across every worker process. */
export function gateByOrg<T extends { orgId: number }, R>(processor: Processor<T, R>, opts: OrgGateOptions): Processor<T, R> {
  const { slots, logger } = opts;
  // A job's running time here (moving average): how long a parked job should expect to wait per job ahead of it.
  let averageMs = 100;

  /** Wakes the org's oldest parked job; tries the next one when a job is not (or not yet) in the delayed set. */
  async function wakeNext(orgId: number, jobId: string): Promise<void> {
    let next = await slots.release(orgId, jobId);
    for (let tries = 0; next !== undefined && tries < 3; tries++) {
      const promoted = await opts.promote(next).then(
        () => true,
        // Parked a moment ago and still on its way to the delayed set: once more, shortly.
        () =>
          sleep(50).then(() =>
            opts.promote(next!).then(
              () => true,
              () => false,
            ),
          ),
      );
      if (promoted) return;
      next = await slots.release(orgId, jobId);
    }
  }

  return async function gated(job: Job<T, R>, token?: string): Promise<R> {
    const { orgId } = job.data;
    const limit = token && job.id ? await opts.limitOf(orgId) : 0;
    if (limit <= 0) return processor(job, token);
    const jobId = job.id!;
    const grant = await slots.acquire(orgId, jobId, limit).catch((err: Error) => {
      logger.warn('org slot check failed: running the job without its cap', { err: err.message });
      return undefined;
    });
    if (grant && !grant.granted) {
      opts.onParked?.();
      // Woken by a finishing job long before this, normally; the delay is the fallback should that wake-up be lost.
      const delay = Math.min(opts.maxParkMs, 1000 + Math.ceil((2 * grant.parked * averageMs) / limit));
      await job.moveToDelayed(Date.now() + delay, token);
      throw new DelayedError();
    }
    const started = performance.now();
    try {
      return await processor(job, token);
    } finally {
      averageMs = 0.9 * averageMs + 0.1 * (performance.now() - started);
      if (grant) {
        await wakeNext(orgId, jobId).catch((err: Error) => logger.warn('org slot release failed', { err: err.message }));
      }
    }
  };
}
