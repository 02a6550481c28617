/** Admin routes: create, list, read, update orgs and grant credits. */
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import Joi from 'joi';
import type { Deps } from '../deps.js';
import { ORG_STATUSES } from '../tenancy/org.repository.js';
import { adminView, publicView, type OrgPatch } from '../tenancy/orgs.service.js';
import { requireAdmin } from './auth.js';
import { idempotencyKey } from './idempotency.js';
import { setNextLink } from './pagination.js';
import type { AppContext, AppState } from './types.js';
import { validate } from './validate.js';

/** Org names: 1–100 characters after trimming, no control characters. */
export const orgName = Joi.string().trim().min(1).max(100).pattern(/^[^\p{Cc}\p{Cf}]+$/u, 'no control characters');
const id = Joi.object({ id: Joi.number().integer().min(1).max(4_294_967_295).required() });
/** Builds the admin router. */
export function orgsRouter(deps: Deps): Router<AppState> {
  const router = new Router<AppState>();
  const admin = requireAdmin(deps.config.adminToken, deps.limits);

  router.post('/orgs', admin, validate({
    body: Joi.object({
      name: orgName.required(),
      credits: Joi.number().integer().min(0).max(1_000_000_000),
      server: Joi.string().max(64),
    }).required(),
  }), async (ctx: AppContext) => {
    const body = ctx.state.body as { name: string; credits?: number; server?: string };
    const { org, apiKey } = await deps.orgs.create({ name: body.name, credits: body.credits ?? deps.config.defaultCredits, server: body.server });
    ctx.status = 201;
    ctx.body = { success: true, org: publicView(org), apiKey };
  });

  router.get('/orgs', admin, validate({
    query: Joi.object({
      limit: Joi.number().integer().min(1).max(100).default(20),
      after: Joi.number().integer().min(0),
      status: Joi.string().valid(...ORG_STATUSES),
    }),
  }), async (ctx: AppContext) => {
    const q = ctx.state.query as { limit: number; after?: number; status?: (typeof ORG_STATUSES)[number] };
    const orgs = await deps.orgs.list({ limit: q.limit, after: q.after, statuses: q.status ? [q.status] : undefined });
    setNextLink(ctx, 'after', orgs.length === q.limit ? orgs[orgs.length - 1]!.id : undefined);
    ctx.body = { success: true, orgs: orgs.map(adminView) };
  });

  router.get('/orgs/:id', admin, validate({ params: id }), async (ctx: AppContext) => {
    ctx.body = { success: true, org: adminView(await deps.orgs.get((ctx.state.params as { id: number }).id)) };
  });

  router.patch('/orgs/:id', admin, validate({
    params: id,
    body: Joi.object({
      status: Joi.string().valid('ACTIVE', 'SUSPENDED'),
      rateLimit: Joi.object({
        points: Joi.number().integer().min(1).max(1_000_000).required(),
        duration: Joi.number().integer().min(1).max(86_400).required(),
      }).allow(null),
      webhookUrl: Joi.string().uri({ scheme: ['http', 'https'] }).max(2048).allow(null),
      rotateWebhookSecret: Joi.boolean(),
    }).min(1).required(),
  }), async (ctx: AppContext) => {
    const { org, webhookSecret } = await deps.orgs.patch((ctx.state.params as { id: number }).id, ctx.state.body as OrgPatch);
    ctx.body = { success: true, org: adminView(org), ...(webhookSecret ? { webhookSecret } : {}) };
  });

  router.post('/orgs/:id/credits', admin, validate({
    params: id,
    body: Joi.object({ amount: Joi.number().integer().min(-1_000_000_000).max(1_000_000_000).invalid(0).required() }).required(),
  }), async (ctx: AppContext) => {
    const key = idempotencyKey(ctx);
    const { amount } = ctx.state.body as { amount: number };
    const result = await deps.orgs.credit((ctx.state.params as { id: number }).id, amount, `admin:${key ?? randomUUID()}`);
    if (result.replayed) ctx.set('Idempotency-Replay', 'true');
    ctx.body = { success: true, org: adminView(result.org), entry: result.entry };
  });

  return router;
}
