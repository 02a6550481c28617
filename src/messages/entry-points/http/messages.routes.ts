/** The messages routes of a tenant (X-Org-Id + API key): send, list, read. */
import Router from '@koa/router';
import Joi from 'joi';
import { notFound } from '../../../platform/lib/errors.js';
import { acceptSend, messageCost, sendSchema } from '../../domain/channels/index.js';
import { MESSAGE_STATUSES } from '../../domain/message.js';
import type { ListQuery, MessageService } from '../../domain/messages.service.js';
import type { RateLimits } from '../../../platform/rate-limits/rate-limits.js';
import { idempotencyKey } from '../../../platform/http/idempotency.js';
import { pageLimitRule, setNextLink } from '../../../platform/http/pagination.js';
import type { AppState } from '../../../platform/http/types.js';
import { validated, withFastPath } from '../../../platform/http/validate.js';
import { chargeOrg, orgRateLimit, requireTenant, type OrgRegistry } from '../../../orgs/index.js';
import { acceptedView, messageView } from './message.views.js';

/** `POST /messages` body: the common valid body without joi's object and `when`s, errors from the schema. */
const sendBody = withFastPath(sendSchema, acceptSend);

/** `GET /messages` query. */
export const listSchema = Joi.object<ListQuery>({
  limit: pageLimitRule,
  status: Joi.string().valid(...MESSAGE_STATUSES),
  before: Joi.number().integer().min(1).max(Number.MAX_SAFE_INTEGER),
});

const MESSAGE_ID = /^[1-9][0-9]{0,15}$/;

/** What the tenant routes use. */
export interface MessagesRouterDeps {
  registry: OrgRegistry;
  limits: RateLimits;
  messages: MessageService;
}

export function messagesRouter({ registry, limits, messages }: MessagesRouterDeps): Router<AppState> {
  const router = new Router<AppState>();
  // Every tenant route is authenticated, then charged to the org's rate limit (POST /messages by its cost).
  const tenant = requireTenant(registry, limits);

  router.post(
    '/messages',
    tenant,
    validated({ body: sendBody }, async (ctx, { body }) => {
      const charging = chargeOrg(ctx, limits, messageCost(body.channel, body.body));
      if (charging) await charging;
      const { message, replayed } = await messages.send(ctx.state.org!, body, idempotencyKey(ctx));
      // A replay answers what the first request was answered: 202 and the message as accepted.
      ctx.status = 202;
      if (replayed) ctx.set('Idempotency-Replay', 'true');
      ctx.body = { success: true, message: acceptedView(message) };
    }),
  );

  router.get(
    '/messages',
    tenant,
    orgRateLimit(limits),
    validated({ query: listSchema }, async (ctx, { query }) => {
      const rows = await messages.list(ctx.state.org!, query);
      setNextLink(ctx, 'before', rows.length === query.limit ? Number(rows[rows.length - 1]!.id) : undefined);
      ctx.body = rows.map(messageView);
    }),
  );

  router.get(
    '/messages/:id',
    tenant,
    orgRateLimit(limits),
    validated({}, async (ctx) => {
      // Not a message id (or past the safe integers, where two ids would read as one): no such message, as for another tenant's.
      const raw = ctx.params!.id!;
      const id = MESSAGE_ID.test(raw) ? Number(raw) : 0;
      const message = Number.isSafeInteger(id) && id > 0 ? await messages.get(ctx.state.org!, id) : null;
      if (!message) throw notFound('MESSAGE_NOT_FOUND', 'no such message');
      ctx.body = { success: true, message: messageView(message) };
    }),
  );

  return router;
}
