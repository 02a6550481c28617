/** The BullMQ dashboard (bull-board) at /admin/queues, behind HTTP Basic auth: user `admin`, password ADMIN_TOKEN. */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Next } from 'koa';
import type { Queue } from 'bullmq';
import type { RateLimits } from '../platform/rate-limits/rate-limits.js';
import { AppError } from '../platform/lib/errors.js';
import { safeEqual } from '../platform/lib/secrets.js';
import type { AppContext } from '../platform/http/types.js';

/** Where the dashboard lives; every path under it needs Basic auth. */
export const DASHBOARD_PATH = '/admin/queues';

const BASIC = /^Basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** True only for `Authorization: Basic base64(admin:<adminToken>)`; nothing else (query string, Bearer, cookies) counts. */
export function isDashboardAdmin(authorization: string | undefined, adminToken: string): boolean {
  const m = BASIC.exec(authorization ?? '');
  if (!m) return false;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const userOk = safeEqual(decoded.slice(0, colon), 'admin');
  const passwordOk = safeEqual(decoded.slice(colon + 1), adminToken);
  return userOk && passwordOk;
}

/** What the dashboard uses. */
export interface DashboardDeps {
  queues: Queue[];
  adminToken: string;
  readOnly: boolean;
  limits: Pick<RateLimits, 'checkAuthFailures' | 'recordAuthFailure'>;
}

/** Serves bull-board for every project queue under DASHBOARD_PATH; read-only unless DASHBOARD_READ_ONLY=false. */
export function dashboard(deps: DashboardDeps) {
  const readOnlyMode = deps.readOnly;
  const serverAdapter = new KoaAdapter().setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: deps.queues.map((q) => new BullMQAdapter(q, { readOnlyMode })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Queues' } },
  });
  const board = serverAdapter.registerPlugin();
  const guarded = async (ctx: AppContext, next: Next) => {
    await deps.limits.checkAuthFailures(ctx.ip);
    const authorization = ctx.get('Authorization') || undefined;
    if (!isDashboardAdmin(authorization, deps.adminToken)) {
      // A browser's first, anonymous request is always refused: only wrong credentials count as a failure.
      if (authorization) await deps.limits.recordAuthFailure(ctx.ip);
      throw new AppError({
        code: 'DASHBOARD_AUTH_REQUIRED',
        status: 401,
        message: 'the queue dashboard needs HTTP Basic auth (user admin, password ADMIN_TOKEN)',
        headers: { 'WWW-Authenticate': 'Basic realm="queues"' },
      });
    }
    // Browsers resend Basic credentials on their own: refuse writes a cross-site page could forge (no CORS here).
    if (!SAFE_METHODS.has(ctx.method)) {
      const site = ctx.get('Sec-Fetch-Site');
      if (site && site !== 'same-origin' && site !== 'none')
        throw new AppError({ code: 'DASHBOARD_CROSS_SITE', status: 403, message: 'cross-site dashboard actions are refused' });
      if (ctx.request.length !== 0 && ctx.request.is('application/json') === false)
        throw new AppError({ code: 'UNSUPPORTED_MEDIA_TYPE', status: 415, message: 'dashboard actions take application/json' });
    }
    await board(ctx, next);
  };
  // Every other request passes straight on (no promise of its own: this runs before every API request).
  return (ctx: AppContext, next: Next) =>
    ctx.path === DASHBOARD_PATH || ctx.path.startsWith(`${DASHBOARD_PATH}/`) ? guarded(ctx, next) : next();
}
