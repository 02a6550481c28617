/**
 * Fairness across tenants on one BullMQ queue (open-source BullMQ has no per-tenant groups): every job gets a priority
 * that grows with how much its org enqueued recently, so a tenant with a burst behind it never holds back another
 * tenant's few messages, and a tenant alone still gets the whole queue.
 *
 * The priority of an org's next job is 1 + its recent enqueues: a count that decays by half every `halfLifeMs`
 * (kept per process, no Redis round trip). A quiet org's jobs come at priority 1 or 2; a burst of 20,000 reaches the
 * thousands, so the quiet job passes all but a handful of them (BullMQ takes the lowest priority first, FIFO within
 * one). Once a burst is over its count decays, and the org is quiet again. With several API processes each counts the
 * share it enqueued: a burst spread over them still ranks far behind a quiet org.
 */
import { LRUCache } from 'lru-cache';

/** BullMQ's highest priority value (lowest urgency): 2^21 - 1. */
export const MAX_PRIORITY = 2_097_151;

export interface FairShare {
  /** The priority of the org's next job (1 = first); counts that job. */
  next(orgId: number): number;
}

export interface FairShareOptions {
  /** How fast an org's count of recent enqueues halves. */
  halfLifeMs: number;
  /** Orgs tracked at once (the least recently active are forgotten, as if quiet). */
  maxOrgs?: number;
  now?: () => number;
}

/** Creates the per-process fair-share counter. */
export function createFairShare(opts: FairShareOptions): FairShare {
  const now = opts.now ?? Date.now;
  const counts = new LRUCache<number, { value: number; at: number }>({ max: opts.maxOrgs ?? 100_000 });
  return {
    next(orgId) {
      const t = now();
      const c = counts.get(orgId);
      const decayed = c ? c.value * 0.5 ** ((t - c.at) / opts.halfLifeMs) : 0;
      counts.set(orgId, { value: decayed + 1, at: t });
      return Math.min(MAX_PRIORITY, 1 + Math.floor(decayed));
    },
  };
}
