/**
 * Holds a queue's jobs to their org's concurrency (src/platform/queue/org-permits.ts) around any processor: a job runs in one of
 * its org's permits (renewed while it runs), or is parked in BullMQ's delayed set until a finishing job of the org
 * hands it its permit and wakes it (promote). The cap is about sharing the workers, not about safety: while the cap or
 * the permits cannot be read, jobs run ungated, and the processor's own error handling (postponing on an outage)
 * applies as before.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError, type Job, type Processor } from 'bullmq';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../lib/logger.js';
import type { OrgPermits } from './org-permits.js';

export interface OrgGateOptions {
  permits: OrgPermits;
  /** The org's cap now (0: none). */
  limitOf(orgId: number): Promise<number>;
  /** Moves a delayed job to the queue (BullMQ promote); rejects when the job is not delayed. */
  promote(jobId: string): Promise<void>;
  /** The job's BullMQ state ('unknown' when it no longer exists). */
  stateOf(jobId: string): Promise<string>;
  /** How long a lease lasts: a running job renews it every third of this. */
  leaseMs: number;
  /** Longest a parked job waits before it wakes by itself, should its wake-up be lost. */
  maxParkMs: number;
  logger: Logger;
  onParked?: () => void;
}

/** Wakes this many parked jobs at most per finishing job before giving up (the rest wake on their own delay). */
const WAKE_TRIES = 3;
/** States of a job that will never use a permit handed to it. */
const FINISHED = new Set(['completed', 'failed', 'unknown']);

/** Wraps `processor` so that each org has at most its cap of jobs running, across every worker process. */
export function gateByOrg<T extends { orgId: number }, R>(processor: Processor<T, R>, opts: OrgGateOptions): Processor<T, R> {
  const { permits, logger } = opts;
  // Each org's job running time here (moving average): how long a parked job should expect to wait per job ahead.
  const averageMs = new LRUCache<number, number>({ max: 10_000 });

  const promoted = (jobId: string) =>
    opts.promote(jobId).then(
      () => true,
      // Parked a moment ago and still on its way to the delayed set: once more, shortly.
      () =>
        sleep(50).then(() =>
          opts.promote(jobId).then(
            () => true,
            () => false,
          ),
        ),
    );

  /**
   * Gives the permit back and wakes the org's oldest parked job with it. A job that cannot be promoted may be running
   * already (it woke by itself and found the permit handed to it) or be on its way to run: it keeps the permit. Only one
   * that is finished or gone passes the permit on, to the next parked job or back to the org.
   */
  async function releaseAndWake(orgId: number, jobId: string): Promise<void> {
    let next = await permits.release(orgId, jobId);
    for (let tries = 1; next !== undefined; tries++) {
      if (await promoted(next)) return;
      if (!FINISHED.has(await opts.stateOf(next))) return;
      next = await permits.release(orgId, next, tries < WAKE_TRIES);
    }
  }

  return async function gated(job: Job<T, R>, token?: string): Promise<R> {
    const { orgId } = job.data;
    if (!token || !job.id) return processor(job, token);
    const jobId = job.id;
    const limit = await opts.limitOf(orgId).catch((err: Error) => {
      // The org could not be read (the shared DB is down): the processor meets the same outage and postpones.
      logger.debug('org cap unknown: running the job without it', { err: err.message });
      return 0;
    });
    if (limit <= 0) return processor(job, token);
    const grant = await permits.acquire(orgId, jobId, limit).catch((err: Error) => {
      logger.warn('org permit check failed: running the job without its cap', { err: err.message });
      return undefined;
    });
    if (grant && !grant.granted) {
      opts.onParked?.();
      // Woken by a finishing job long before this, normally; the delay (from its place in line) covers a lost wake-up.
      const ahead = (grant.parked * (averageMs.get(orgId) ?? 100)) / limit;
      await job.moveToDelayed(Date.now() + Math.min(opts.maxParkMs, 1000 + Math.ceil(2 * ahead)), token);
      throw new DelayedError();
    }
    const started = performance.now();
    const renewal = grant
      ? setInterval(() => void permits.renew(orgId, jobId).catch(() => undefined), Math.max(100, Math.floor(opts.leaseMs / 3)))
      : undefined;
    try {
      return await processor(job, token);
    } finally {
      clearInterval(renewal);
      averageMs.set(orgId, 0.9 * (averageMs.get(orgId) ?? 100) + 0.1 * (performance.now() - started));
      if (grant) {
        await releaseAndWake(orgId, jobId).catch((err: Error) => logger.warn('org permit release failed', { err: err.message }));
      }
    }
  };
}
