/** The Koa side of the per-org rate limit: charge the request, set the RateLimit-* headers, 429 when over. */
import type { Next } from 'koa';
import { rateLimited, type OrgLimitResult, type RateLimits } from '../../../platform/rate-limits/rate-limits.js';
import type { AppContext } from '../../../platform/http/types.js';

/**
 * Both generations of the IETF headers: the current draft (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy`
 * with the quota `q` per window `w` seconds, and `RateLimit` with what `r` remains and the seconds `t` until it resets,
 * under the policy name "org"), and the earlier draft's `RateLimit-Limit/-Remaining/-Reset` that clients already read.
 */
function setHeaders(ctx: AppContext, r: OrgLimitResult): void {
  const reset = Math.ceil(r.resetMs / 1000);
  ctx.set('RateLimit-Policy', `"org";q=${r.limit.points};w=${r.limit.duration}`);
  ctx.set('RateLimit', `"org";r=${r.remaining};t=${reset}`);
  ctx.set('RateLimit-Limit', String(r.limit.points));
  ctx.set('RateLimit-Remaining', String(r.remaining));
  ctx.set('RateLimit-Reset', String(reset));
}

/**
 * Charges `cost` to the request's org (after requireTenant), sets RateLimit-* headers, throws 429 when over. Answered
 * at once (undefined) while this process holds a reserve of the org's window; a promise when Redis has to be asked.
 */
export function chargeOrg(ctx: AppContext, limits: RateLimits, cost: number): Promise<void> | undefined {
  const org = ctx.state.org!;
  const spent = limits.spendOrg(org.id, org.rateLimit, cost);
  if (spent) return settle(ctx, spent);
  return limits.consumeOrg(org.id, org.rateLimit, cost).then((r) => settle(ctx, r));
}

function settle(ctx: AppContext, r: OrgLimitResult): undefined {
  setHeaders(ctx, r);
  if (!r.allowed) throw rateLimited(`rate limit of ${r.limit.points} per ${r.limit.duration}s reached for this org`, r.resetMs);
  return undefined;
}

/** Middleware: every request costs one point of its org's window. */
export function orgRateLimit(limits: RateLimits) {
  return (ctx: AppContext, next: Next) => {
    const charging = chargeOrg(ctx, limits, 1);
    return charging ? charging.then(() => next()) : next();
  };
}
