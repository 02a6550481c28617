/**
 * Rate limits on Redis (shared by every API process) with an in-memory insurance limiter, so a Redis outage
 * degrades to per-process limits instead of 500s or no limit at all.
 * - per org on tenant routes: RATE_LIMIT_POINTS per RATE_LIMIT_DURATION s (or the org's override), weighted;
 * - per client IP on failed authentication: once AUTH_FAILURE_LIMIT failures are counted (across processes), requests
 *   from that IP are refused before their key is even looked at, until the window ends.
 */
import type { Next } from 'koa';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError } from '../lib/errors.js';
import type { AppContext } from './types.js';

export interface RateLimitOptions {
  redis: Redis;
  prefix: string;
  defaults: { points: number; duration: number };
  authFailures: { points: number; duration: number };
}

export interface RateLimits {
  /** Middleware: charges the request's weight to its org (after requireTenant) and sets RateLimit-* headers. */
  perOrg(weight?: (ctx: AppContext) => number): (ctx: AppContext, next: Next) => Promise<void>;
  /** Refuses an IP that has failed authentication too often (429), before any key is checked. */
  checkAuthFailures(ip: string): Promise<void>;
  /** Counts one failed authentication for an IP. */
  recordAuthFailure(ip: string): Promise<void>;
}

function limiter(o: RateLimitOptions, keyPrefix: string, points: number, duration: number): RateLimiterRedis {
  return new RateLimiterRedis({
    storeClient: o.redis,
    keyPrefix: `${o.prefix}:rl:${keyPrefix}`,
    points,
    duration,
    insuranceLimiter: new RateLimiterMemory({ points, duration, keyPrefix: `insurance:${keyPrefix}` }),
  });
}

function setHeaders(ctx: AppContext, limit: number, r: RateLimiterRes): void {
  ctx.set('RateLimit-Limit', String(limit));
  ctx.set('RateLimit-Remaining', String(Math.max(0, r.remainingPoints)));
  ctx.set('RateLimit-Reset', String(Math.ceil(r.msBeforeNext / 1000)));
}

function tooMany(message: string, r: RateLimiterRes): AppError {
  return new AppError({ code: 'RATE_LIMITED', status: 429, message, headers: { 'Retry-After': String(Math.max(1, Math.ceil(r.msBeforeNext / 1000))) } });
}

/** Creates the limiters (Redis-backed, insured in memory). */
export function createRateLimits(o: RateLimitOptions): RateLimits {
  const orgLimiters = new Map<string, RateLimiterRedis>();
  const forOrg = (points: number, duration: number) => {
    const key = `${points}:${duration}`;
    let l = orgLimiters.get(key);
    if (!l) orgLimiters.set(key, (l = limiter(o, `org:${key}`, points, duration)));
    return l;
  };
  const auth = limiter(o, 'auth-fail', o.authFailures.points, o.authFailures.duration);
  // IPs this process saw fail within the window. Only those are checked against the shared count in Redis, so a
  // successful request costs no extra round trip; another process lets at most one more attempt through first.
  const suspects = new Map<string, number>();
  const MAX_SUSPECTS = 100_000;

  return {
    perOrg(weight) {
      return async (ctx, next) => {
        const org = ctx.state.org!;
        const { points, duration } = org.rateLimit ?? o.defaults;
        // A request heavier than the whole window could never pass: it costs at most the window.
        const cost = Math.min(points, Math.max(1, weight?.(ctx) ?? 1));
        try {
          setHeaders(ctx, points, await forOrg(points, duration).consume(`org:${org.id}`, cost));
        } catch (err) {
          if (!(err instanceof RateLimiterRes)) throw err;
          setHeaders(ctx, points, err);
          throw tooMany(`rate limit of ${points} per ${duration}s reached for this org`, err);
        }
        await next();
      };
    },
    async checkAuthFailures(ip) {
      const until = suspects.get(ip);
      if (until === undefined) return;
      if (until < Date.now()) {
        suspects.delete(ip);
        return;
      }
      const r = await auth.get(`ip:${ip}`).catch(() => null);
      if (r && r.consumedPoints >= o.authFailures.points) throw tooMany('too many failed authentications from this address', r);
    },
    async recordAuthFailure(ip) {
      suspects.delete(ip); // re-insert: the map stays ordered by last failure, oldest first out
      suspects.set(ip, Date.now() + o.authFailures.duration * 1000);
      if (suspects.size > MAX_SUSPECTS) suspects.delete(suspects.keys().next().value!);
      await auth.consume(`ip:${ip}`).catch(() => undefined); // over the limit is exactly what we count
    },
  };
}
