/** The tenant's own org: `GET /org` (X-Org-Id + API key). */
import Router from '@koa/router';
import type { AppState } from '../../../platform/http/types.js';
import { validated } from '../../../platform/http/validate.js';
import type { RateLimits } from '../../../platform/rate-limits/rate-limits.js';
import type { OrgRegistry } from '../../domain/org-registry.js';
import type { OrgService } from '../../domain/orgs.service.js';
import { requireTenant } from './auth.js';
import { orgRateLimit } from './org-rate-limit.js';
import { publicView } from './views.js';

/** What the route uses. */
export interface OwnOrgRouterDeps {
  registry: OrgRegistry;
  limits: RateLimits;
  orgs: Pick<OrgService, 'balance'>;
}

/** Builds the router of `GET /org`. */
export function ownOrgRouter({ registry, limits, orgs }: OwnOrgRouterDeps): Router<AppState> {
  const router = new Router<AppState>();
  router.get(
    '/org',
    requireTenant(registry, limits),
    orgRateLimit(limits),
    validated({}, async (ctx) => {
      // The balance changes with every delivery: read it fresh rather than from the org cache.
      const org = ctx.state.org!;
      ctx.body = { success: true, org: publicView({ ...org, creditBalance: await orgs.balance(org.id) }) };
    }),
  );
  return router;
}
