/** Tenant routes: the caller's own org and its messages. */
import Router from '@koa/router';
import Joi from 'joi';
import type { Deps } from '../deps.js';
import { notFound } from '../lib/errors.js';
import { MESSAGE_STATUSES, messageView, type MessageStatus } from '../messages/message.model.js';
import { findMessage, listMessages } from '../messages/messages.repository.js';
import { publicView } from '../tenancy/orgs.service.js';
import { requireTenant, tenantDb } from './auth.js';
import { setNextLink } from './pagination.js';
import type { AppContext, AppState } from './types.js';
import { validate } from './validate.js';

/** Builds the tenant router (X-Org-Id + API key). */
export function tenantRouter(deps: Deps): Router<AppState> {
  const router = new Router<AppState>();
  const tenant = requireTenant(deps.registry);

  router.get('/org', tenant, async (ctx: AppContext) => {
    ctx.body = { success: true, org: publicView(ctx.state.org!) };
  });

  router.get('/messages', tenant, validate({
    query: Joi.object({
      limit: Joi.number().integer().min(1).max(100).default(20),
      status: Joi.string().valid(...MESSAGE_STATUSES),
      before: Joi.number().integer().min(1),
    }),
  }), tenantDb(deps.pools), async (ctx: AppContext) => {
    const q = ctx.state.query as { limit: number; status?: MessageStatus; before?: number };
    const rows = await listMessages(ctx.state.tenantDb!, q);
    setNextLink(ctx, 'before', rows.length === q.limit ? Number(rows[rows.length - 1]!.id) : undefined);
    ctx.body = rows.map(messageView);
  });

  router.get('/messages/:id', tenant, tenantDb(deps.pools), async (ctx: AppContext) => {
    const raw = ctx.params!.id!;
    const message = /^[1-9][0-9]{0,18}$/.test(raw) ? await findMessage(ctx.state.tenantDb!, Number(raw)) : null;
    if (!message) throw notFound('MESSAGE_NOT_FOUND', 'no such message');
    ctx.body = { success: true, message: messageView(message) };
  });

  return router;
}
