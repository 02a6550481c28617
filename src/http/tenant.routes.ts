/** Tenant routes: the caller's own org and its messages. */
import Router from '@koa/router';
import Joi from 'joi';
import type { Deps } from '../deps.js';
import { notFound } from '../lib/errors.js';
import { CHANNELS, MESSAGE_STATUSES, messageView, type MessageStatus } from '../messages/message.model.js';
import type { SendInput } from '../messages/messages.service.js';
import { messageCost } from '../messages/cost.js';
import { findMessage, listMessages } from '../messages/messages.repository.js';
import { publicView } from '../tenancy/orgs.service.js';
import { requireTenant, tenantDb } from './auth.js';
import { idempotencyKey } from './idempotency.js';
import { setNextLink } from './pagination.js';
import type { AppContext, AppState } from './types.js';
import { validate } from './validate.js';

/** Largest e-mail body, in UTF-8 bytes. */
const EMAIL_BODY_MAX_BYTES = 100 * 1024;

/** `POST /messages`: E.164 for sms, an address for email; a non-blank body within the channel's limit; nothing else. */
export const sendSchema = Joi.object({
  channel: Joi.string().valid(...CHANNELS).required(),
  to: Joi.string().required().when('channel', {
    is: 'sms',
    then: Joi.string().pattern(/^\+[1-9][0-9]{6,14}$/, 'E.164 phone number'),
    otherwise: Joi.string().max(320).email({ tlds: { allow: false } }),
  }),
  body: Joi.string().required().pattern(/\S/, 'non-blank text').when('channel', {
    is: 'sms',
    then: Joi.string().max(1600),
    otherwise: Joi.string().custom((value: string, helpers) =>
      Buffer.byteLength(value, 'utf8') > EMAIL_BODY_MAX_BYTES ? helpers.message({ custom: `"body" must be at most ${EMAIL_BODY_MAX_BYTES} bytes for email` }) : value),
  }),
}).required();

/** Builds the tenant router (X-Org-Id + API key). */
export function tenantRouter(deps: Deps): Router<AppState> {
  const router = new Router<AppState>();
  // Every tenant route is authenticated, then charged to the org's rate limit (POST /messages by its cost).
  const tenant = [requireTenant(deps.registry, deps.limits), deps.limits.perOrg()];
  const tenantSend = [requireTenant(deps.registry, deps.limits), validate({ body: sendSchema }),
    deps.limits.perOrg((ctx) => messageCost((ctx.state.body as SendInput).channel, (ctx.state.body as SendInput).body))];

  router.get('/org', ...tenant, async (ctx: AppContext) => {
    // The balance changes with every delivery: read it fresh rather than from the org cache.
    const org = ctx.state.org!;
    ctx.body = { success: true, org: publicView({ ...org, creditBalance: await deps.repo.balance(org.id) }) };
  });

  router.post('/messages', ...tenantSend, tenantDb(deps.pools), async (ctx: AppContext) => {
    const key = idempotencyKey(ctx);
    const { message, replayed } = await deps.messages.send(ctx.state.org!, ctx.state.tenantDb!, ctx.state.body as SendInput, key);
    ctx.status = replayed ? 200 : 202;
    if (replayed) ctx.set('Idempotency-Replay', 'true');
    ctx.body = { success: true, message: messageView(message) };
  });

  router.get('/messages', ...tenant, validate({
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

  router.get('/messages/:id', ...tenant, tenantDb(deps.pools), async (ctx: AppContext) => {
    const raw = ctx.params!.id!;
    const message = /^[1-9][0-9]{0,18}$/.test(raw) ? await findMessage(ctx.state.tenantDb!, Number(raw)) : null;
    if (!message) throw notFound('MESSAGE_NOT_FOUND', 'no such message');
    ctx.body = { success: true, message: messageView(message) };
  });

  return router;
}
