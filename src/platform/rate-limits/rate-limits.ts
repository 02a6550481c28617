/**
 * Rate limits on Redis (shared by every API process) with an in-memory insurance limiter, so a Redis outage
 * degrades to per-process limits instead of 500s or no limit at all.
 * - per org: `points` per `duration` s (the org's override or the default), each request weighted;
 * - per client IP on failed authentication: once `authFailures.points` failures are counted (across processes),
 *   requests from that IP are refused before their key is even looked at, until the window ends.
 * The Koa side (headers, 429) is src/orgs/entry-points/http/org-rate-limit.ts.
 *
 * A large org limit is not counted one request per round trip: a process reserves a chunk of the window at once
 * (1/RESERVE_DIVISOR of it, at most RESERVE_MAX points) and spends it locally until it is used up or the window ends.
 * Never more than the limit is granted: a reservation is counted in Redis when it is taken, and one that does not fit
 * is refused (and stays counted until the window ends: the store counts refused requests too). What a process
 * reserved and did not spend, or could not reserve at the end of a window, is lost with the window: P processes may
 * grant up to 2 × P chunks less than the limit. Limits below 2 × RESERVE_DIVISOR points are counted exactly, one round
 * trip per request.
 */
import type { RedisClient } from '../lib/redis.js';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { LRUCache } from 'lru-cache';
import { AppError } from '../lib/errors.js';
import { createNextTurn } from '../lib/batch.js';

export interface Limit {
  points: number;
  duration: number;
}

/** The state of one org's window after a request was counted (or refused). */
export interface OrgLimitResult {
  allowed: boolean;
  limit: Limit;
  remaining: number;
  resetMs: number;
}

/** Builds a limiter for one key space; the default is Redis with an in-memory insurance limiter. */
export type LimiterFactory = (keyPrefix: string, limit: Limit) => RateLimiterAbstract;

export interface RateLimitOptions {
  defaults: Limit;
  authFailures: Limit;
  makeLimiter: LimiterFactory;
  now?: () => number;
}

export interface RateLimits {
  /** Charges `cost` to the org's window (its override, or the default limit). */
  consumeOrg(orgId: number, override: Limit | null, cost: number): Promise<OrgLimitResult>;
  /**
   * The same charge when this process's reserve of the org's window covers it (the hot path: no promise), else
   * undefined and nothing charged: then consumeOrg.
   */
  spendOrg(orgId: number, override: Limit | null, cost: number): OrgLimitResult | undefined;
  /**
   * Refuses an IP that has failed authentication too often (429), before any key is checked. Nothing to wait for
   * (undefined) unless this process saw the address fail lately.
   */
  checkAuthFailures(ip: string): Promise<void> | undefined;
  /** Counts one failed authentication for an IP. */
  recordAuthFailure(ip: string): Promise<void>;
}

/** The production limiter factory: Redis under `<prefix>:rl:`, insured in memory. */
export function redisLimiters(redis: RedisClient, prefix: string): LimiterFactory {
  return (keyPrefix, { points, duration }) =>
    new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `${prefix}:rl:${keyPrefix}`,
      points,
      duration,
      insuranceLimiter: new RateLimiterMemory({ points, duration, keyPrefix: `insurance:${keyPrefix}` }),
    });
}

/** 429 RATE_LIMITED with Retry-After. */
export function rateLimited(message: string, msBeforeNext: number): AppError {
  return new AppError({
    code: 'RATE_LIMITED',
    status: 429,
    message,
    headers: { 'Retry-After': String(Math.max(1, Math.ceil(msBeforeNext / 1000))) },
  });
}

/** A chunk is this share of the window… */
export const RESERVE_DIVISOR = 20;
/** …and at most this many points. */
export const RESERVE_MAX = 1000;

/** Points of one org's window that this process took in advance. */
interface Reserve {
  left: number;
  /** The shared window's remaining points when the chunk was taken (not counting the chunk). */
  sharedRemaining: number;
  resetAt: number;
  /** A chunk was refused: the rest of the window is counted request by request (and refused) until it resets. */
  exact: boolean;
}

export function createRateLimits(o: RateLimitOptions): RateLimits {
  const now = o.now ?? Date.now;
  const orgLimiters = new Map<string, RateLimiterAbstract>();
  const forOrg = (limit: Limit) => {
    const key = `${limit.points}:${limit.duration}`;
    let l = orgLimiters.get(key);
    if (!l) orgLimiters.set(key, (l = o.makeLimiter(`org:${key}`, limit)));
    return l;
  };
  const auth = o.makeLimiter('auth-fail', o.authFailures);
  // IPs this process saw fail within the window. Only those are checked against the shared count in Redis, so a
  // successful request costs no extra round trip; another process lets at most one more attempt through first.
  const suspects = new Map<string, number>();
  const MAX_SUSPECTS = 100_000;

  const reserves = new LRUCache<string, Reserve>({ max: 100_000 });
  const refills = new Map<string, Promise<unknown>>();

  /** A request heavier than the whole window could never pass: it costs at most the window. */
  const chargeOf = (limit: Limit, cost: number) => Math.min(limit.points, Math.max(1, cost));
  const chunkOf = (limit: Limit) => Math.min(RESERVE_MAX, Math.floor(limit.points / RESERVE_DIVISOR));
  const reserveKey = (orgId: number, limit: Limit) => `org:${orgId}:${limit.points}:${limit.duration}`;

  /**
   * Refills asked for within one batch of ready sockets are sent together (lib/batch.ts): on the auto-pipelined command
   * client (lib/redis.ts) that is one write and one read for all of them. A large fleet's traffic is mostly orgs without
   * a reserve in the current window (the first request of each, every window).
   */
  const together = createNextTurn();

  /** `points` from this process's reserve of the org's window, if it holds them (and the window is whole-chunked). */
  function spend(orgId: number, limit: Limit, points: number): OrgLimitResult | undefined {
    const chunk = chunkOf(limit);
    if (chunk < 2 || points > chunk) return undefined;
    const r = reserves.get(reserveKey(orgId, limit));
    if (!r) return undefined;
    const at = now();
    if (r.resetAt <= at || r.left < points) return undefined;
    r.left -= points;
    return { allowed: true, limit, remaining: r.sharedRemaining + r.left, resetMs: r.resetAt - at };
  }

  /** Exactly `points` of the shared window, one round trip. */
  async function consumeShared(limiter: RateLimiterAbstract, key: string, limit: Limit, points: number): Promise<OrgLimitResult> {
    const result = (r: RateLimiterRes, allowed: boolean): OrgLimitResult => ({
      allowed,
      limit,
      remaining: Math.max(0, r.remainingPoints),
      resetMs: r.msBeforeNext,
    });
    try {
      return result(await limiter.consume(key, points), true);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      return result(err, false);
    }
  }

  /** Takes a chunk of the window into this process's reserve (none when the window has no whole chunk left). */
  async function reserve(limiter: RateLimiterAbstract, key: string, cacheKey: string, chunk: number): Promise<void> {
    try {
      const r = await limiter.consume(key, chunk);
      reserves.set(cacheKey, {
        left: chunk,
        sharedRemaining: Math.max(0, r.remainingPoints),
        resetAt: now() + r.msBeforeNext,
        exact: false,
      });
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      // Not given back (a reward could land after the window reset and over-grant the next one): the rest of this
      // window is counted exactly, and refused, since the refused chunk stays counted.
      reserves.set(cacheKey, {
        left: 0,
        sharedRemaining: Math.max(0, err.remainingPoints),
        resetAt: now() + err.msBeforeNext,
        exact: true,
      });
    }
  }

  return {
    spendOrg(orgId, override, cost) {
      const limit = override ?? o.defaults;
      return spend(orgId, limit, chargeOf(limit, cost));
    },
    async consumeOrg(orgId, override, cost) {
      const limit = override ?? o.defaults;
      const points = chargeOf(limit, cost);
      const limiter = forOrg(limit);
      const key = `org:${orgId}`;
      const chunk = chunkOf(limit);
      if (chunk < 2 || points > chunk) return consumeShared(limiter, key, limit, points);
      const local = spend(orgId, limit, points);
      if (local) return local;
      const cacheKey = reserveKey(orgId, limit);
      const current = reserves.get(cacheKey);
      if (current?.exact && current.resetAt > now()) return consumeShared(limiter, key, limit, points);
      // One refill at a time per org: concurrent requests wait for it instead of each reserving a chunk.
      let refill = refills.get(cacheKey);
      if (!refill) {
        refill = together(() => reserve(limiter, key, cacheKey, chunk)).finally(() => refills.delete(cacheKey));
        refills.set(cacheKey, refill);
      }
      await refill;
      return spend(orgId, limit, points) ?? consumeShared(limiter, key, limit, points);
    },
    checkAuthFailures(ip) {
      const until = suspects.get(ip);
      if (until === undefined) return undefined;
      if (until < now()) {
        suspects.delete(ip);
        return undefined;
      }
      return auth.get(`ip:${ip}`).then(
        (r) => {
          if (r && r.consumedPoints >= o.authFailures.points)
            throw rateLimited('too many failed authentications from this address', r.msBeforeNext);
        },
        () => undefined,
      );
    },
    async recordAuthFailure(ip) {
      suspects.delete(ip); // re-insert: the map stays ordered by last failure, oldest first out
      suspects.set(ip, now() + o.authFailures.duration * 1000);
      if (suspects.size > MAX_SUSPECTS) suspects.delete(suspects.keys().next().value!);
      await auth.consume(`ip:${ip}`).catch(() => undefined); // over the limit is exactly what we count
    },
  };
}
