/** Admin: what an org's deliveries are doing now (`GET /orgs/:id/delivery`). */
import Router from '@koa/router';
import { orgIdParams, type OrgService } from '../../../orgs/index.js';
import type { AppContext, AppState } from '../../../platform/http/types.js';
import { validated } from '../../../platform/http/validate.js';
import type { DeliveryLoadReader } from '../../domain/delivery-load.js';

/** What the route uses. */
export interface DeliveryLoadRouterDeps {
  orgs: Pick<OrgService, 'get'>;
  deliveryLoad: DeliveryLoadReader;
  /** Authenticates the admin (first on the route). */
  admin: (ctx: AppContext, next: () => Promise<unknown>) => Promise<unknown>;
}

/** Builds the router of `GET /orgs/:id/delivery`. */
export function deliveryLoadRouter({ orgs, deliveryLoad, admin }: DeliveryLoadRouterDeps): Router<AppState> {
  const router = new Router<AppState>();
  router.get(
    '/orgs/:id/delivery',
    admin,
    validated({ params: orgIdParams }, async (ctx, { params }) => {
      ctx.body = { success: true, delivery: await deliveryLoad.of(await orgs.get(params.id)) };
    }),
  );
  return router;
}
