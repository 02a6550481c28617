/** Admin and tenant authentication for the Koa edge. */
import type { Next } from 'koa';
import { AppError, badRequest, conflict, forbidden, notFound, unauthorized } from '../../../platform/lib/errors.js';
import { safeEqual } from '../../../platform/lib/secrets.js';
import type { OrgRegistry } from '../../domain/org-registry.js';
import { isProvisioned, type ApiKeyRecord, type ProvisionedOrg } from '../../domain/org.js';
import { MAX_ORG_ID } from '../../domain/org.rules.js';
import type { RateLimits } from '../../../platform/rate-limits/rate-limits.js';
import type { AppContext } from '../../../platform/http/types.js';

declare module '../../../platform/http/types.js' {
  interface AppState {
    /** Set by requireTenant: the caller's org, active and provisioned. */
    org?: ProvisionedOrg;
    apiKey?: ApiKeyRecord;
  }
}

const ORG_ID = /^[1-9][0-9]{0,9}$/;

const BEARER = /^Bearer ([\x21-\x7e]{1,512})$/;

function bearer(ctx: AppContext): string | undefined {
  const header = ctx.get('Authorization');
  if (!header)
    throw Object.assign(unauthorized('AUTH_REQUIRED', 'an Authorization: Bearer header is required'), {
      headers: { 'WWW-Authenticate': 'Bearer' },
    });
  return BEARER.exec(header)?.[1];
}

/** Requires `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant time); failures count against the IP. */
export function requireAdmin(adminToken: string, limits: RateLimits) {
  return async (ctx: AppContext, next: Next) => {
    await limits.checkAuthFailures(ctx.ip);
    const token = await counted(ctx, limits, () => bearer(ctx));
    if (!token || !safeEqual(token, adminToken)) {
      await limits.recordAuthFailure(ctx.ip);
      throw new AppError({
        code: 'INVALID_ADMIN_TOKEN',
        status: 401,
        message: 'the admin token is not valid',
        headers: { 'WWW-Authenticate': 'Bearer' },
      });
    }
    await next();
  };
}

/** Runs fn; if it throws (a 401/403), the failure is counted against the client IP first. */
async function counted<T>(ctx: AppContext, limits: RateLimits, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    await limits.recordAuthFailure(ctx.ip);
    throw err;
  }
}

/** Parses X-Org-Id strictly: a positive integer that fits an unsigned INT, nothing else. */
export function parseOrgId(raw: string | undefined): number {
  if (!raw) throw badRequest('INVALID_ORG_ID', 'the X-Org-Id header is required');
  if (!ORG_ID.test(raw) || Number(raw) > MAX_ORG_ID) throw badRequest('INVALID_ORG_ID', 'X-Org-Id must be a positive integer');
  return Number(raw);
}

/**
 * Resolves X-Org-Id to an org and checks the API key belongs to it. Order: 400 bad header → 429 for an address with
 * too many failures → 404 unknown org → 401 missing/invalid key → 403 key of another org → 403 suspended / 409 not
 * ready; 404, 401 and 403 count as failures of the address. Nothing of another org is read.
 */
export function requireTenant(registry: OrgRegistry, limits: RateLimits) {
  const admit = (ctx: AppContext, org: ProvisionedOrg, record: ApiKeyRecord, next: Next) => {
    ctx.state.org = org;
    ctx.state.apiKey = record;
    if (ctx.state.log) ctx.state.log.orgId = org.id;
    return next();
  };

  const check = async (ctx: AppContext, next: Next, orgId: number, suspect: Promise<void> | undefined) => {
    if (suspect) await suspect;
    const key = BEARER.exec(ctx.get('Authorization'))?.[1];
    // The key rides along (unchecked here): a tenant not cached lately has its org and key read in one statement.
    const org = registry.peek(orgId) ?? (await registry.getWithKey(orgId, key));
    if (!org || org.status === 'DELETED') {
      await limits.recordAuthFailure(ctx.ip); // probing org ids counts like guessing keys
      throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
    }
    const cached = key === undefined ? undefined : registry.peekKey(key);
    // Every refusal (and its failure count) comes from the full check below.
    const record =
      cached?.orgId === org.id
        ? cached
        : await counted(ctx, limits, async () => {
            const key = bearer(ctx);
            const found = key ? await registry.verifyKey(key) : undefined;
            if (!found)
              throw Object.assign(unauthorized('INVALID_API_KEY', 'the API key is not valid'), {
                headers: { 'WWW-Authenticate': 'Bearer' },
              });
            if (found.orgId !== org.id) throw forbidden('ORG_MISMATCH', 'the API key does not belong to this org');
            return found;
          });
    if (org.status === 'SUSPENDED') throw forbidden('ORG_SUSPENDED', 'this org is suspended');
    if (org.status !== 'ACTIVE' || !isProvisioned(org)) throw conflict('ORG_NOT_READY', `this org is ${org.status}`);
    await admit(ctx, org, record, next);
  };

  return (ctx: AppContext, next: Next) => {
    const orgId = parseOrgId(ctx.get('X-Org-Id'));
    const suspect = limits.checkAuthFailures(ctx.ip);
    // The hot path: an address that never failed, its org and key cached, fresh and matching, the org usable: nothing
    // to wait for, no promise of its own. Anything else (every refusal included) takes the full check.
    if (!suspect) {
      const org = registry.peek(orgId);
      if (org?.status === 'ACTIVE' && isProvisioned(org)) {
        const key = BEARER.exec(ctx.get('Authorization'))?.[1];
        const cached = key === undefined ? undefined : registry.peekKey(key);
        if (cached?.orgId === org.id) return admit(ctx, org, cached, next);
      }
    }
    return check(ctx, next, orgId, suspect);
  };
}
