/** Admin routes: create, list, read, update orgs and grant credits. */
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import Joi from 'joi';
import { ORG_STATUSES, SETTABLE_STATUSES, type OrgStatus } from '../../domain/org.js';
import {
  creditAmountRule,
  deliveryConcurrencyRule,
  initialCreditsRule,
  orgIdRule,
  orgNameRule,
  serverNameRule,
} from '../../domain/org.rules.js';
import type { OrgPatch, OrgService } from '../../domain/orgs.service.js';
import { idempotencyKey } from '../../../platform/http/idempotency.js';
import { pageLimitRule, setNextLink } from '../../../platform/http/pagination.js';
import { adminView, publicView } from './views.js';
import type { AppContext, AppState } from '../../../platform/http/types.js';
import { validated } from '../../../platform/http/validate.js';

/** `/orgs/:id` (and every admin route under it). */
export const idParams = Joi.object<{ id: number }>({ id: orgIdRule.required() });

/**
 * Bodies are JSON: numbers and booleans must be sent as such (`.strict()`: "10" is refused, as the document's types
 * say); query and path parameters, strings by nature, are converted.
 */
export const createOrgSchema = Joi.object<{ name: string; credits?: number; server?: string }>({
  name: orgNameRule.required(),
  credits: initialCreditsRule.strict(),
  server: serverNameRule,
}).required();

export const listOrgsSchema = Joi.object<{ limit: number; after?: number; status?: OrgStatus }>({
  limit: pageLimitRule,
  after: Joi.number().integer().min(0).max(Number.MAX_SAFE_INTEGER),
  status: Joi.string().valid(...ORG_STATUSES),
});

export const patchOrgSchema = Joi.object<OrgPatch>({
  status: Joi.string().valid(...SETTABLE_STATUSES),
  rateLimit: Joi.object({
    points: Joi.number().strict().integer().min(1).max(1_000_000).required(),
    duration: Joi.number().strict().integer().min(1).max(86_400).required(),
  }).allow(null),
  deliveryConcurrency: deliveryConcurrencyRule.strict().allow(null),
  webhookUrl: Joi.string()
    .uri({ scheme: ['http', 'https'] })
    .max(2048)
    .allow(null),
  rotateWebhookSecret: Joi.boolean().strict(),
})
  .min(1)
  .required();

export const creditSchema = Joi.object<{ amount: number }>({
  amount: creditAmountRule.strict().required(),
}).required();

/** What the admin routes use. */
export interface OrgsRouterDeps {
  orgs: OrgService;
  /** Authenticates the admin (first on every route). */
  admin: (ctx: AppContext, next: () => Promise<unknown>) => Promise<unknown>;
  defaultCredits: number;
}

export function orgsRouter({ orgs, admin, defaultCredits }: OrgsRouterDeps): Router<AppState> {
  const router = new Router<AppState>();

  router.post(
    '/orgs',
    admin,
    validated({ body: createOrgSchema }, async (ctx, { body }) => {
      const { org, apiKey } = await orgs.create({ name: body.name, credits: body.credits ?? defaultCredits, server: body.server });
      ctx.status = 201;
      ctx.body = { success: true, org: publicView(org), apiKey };
    }),
  );

  router.get(
    '/orgs',
    admin,
    validated({ query: listOrgsSchema }, async (ctx, { query }) => {
      const list = await orgs.list({ limit: query.limit, after: query.after, statuses: query.status ? [query.status] : undefined });
      setNextLink(ctx, 'after', list.length === query.limit ? list[list.length - 1]!.id : undefined);
      ctx.body = { success: true, orgs: list.map(adminView) };
    }),
  );

  router.get(
    '/orgs/:id',
    admin,
    validated({ params: idParams }, async (ctx, { params }) => {
      ctx.body = { success: true, org: adminView(await orgs.get(params.id)) };
    }),
  );

  router.patch(
    '/orgs/:id',
    admin,
    validated({ params: idParams, body: patchOrgSchema }, async (ctx, { params, body }) => {
      const { org, webhookSecret } = await orgs.patch(params.id, body);
      ctx.body = { success: true, org: adminView(org), ...(webhookSecret ? { webhookSecret } : {}) };
    }),
  );

  router.post(
    '/orgs/:id/credits',
    admin,
    validated({ params: idParams, body: creditSchema }, async (ctx, { params, body }) => {
      const key = idempotencyKey(ctx);
      const result = await orgs.credit(params.id, body.amount, `admin:${key ?? randomUUID()}`);
      if (result.replayed) ctx.set('Idempotency-Replay', 'true');
      ctx.body = { success: true, org: adminView(result.org), entry: result.entry };
    }),
  );

  return router;
}
