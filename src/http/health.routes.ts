/** Liveness (cheap, no I/O) and readiness (shared DB and Redis, each with a short timeout). */
import Router from '@koa/router';
import type { Deps } from '../deps.js';
import { withTimeout } from '../lib/timeout.js';
import { requireAdmin } from './auth.js';
import type { AppContext, AppState } from './types.js';

const CHECK_TIMEOUT_MS = 1000;

/** Runs the readiness checks; each is 'ok' or the reason it failed. */
export async function readiness(deps: Deps): Promise<Record<string, string>> {
  const checks: Record<string, () => Promise<unknown>> = {
    sharedDb: () => deps.sharedDb.query('SELECT 1'),
    redis: () => deps.redis.ping(), // fail-fast client: reconnects by itself, no offline queue
  };
  const entries = await Promise.all(Object.entries(checks).map(async ([name, check]) => {
    try {
      await withTimeout(check(), CHECK_TIMEOUT_MS);
      return [name, 'ok'] as const;
    } catch (err) {
      // The reason goes to the log only: /ready is public, and driver errors name hosts and users.
      deps.logger.warn('readiness check failed', { check: name, err: (err as Error).message });
      return [name, 'unavailable'] as const;
    }
  }));
  return Object.fromEntries(entries);
}

/** Builds /health, /ready and /metrics (admin token). */
export function healthRouter(deps: Deps): Router<AppState> {
  const router = new Router<AppState>();
  router.get('/health', (ctx: AppContext) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/metrics', requireAdmin(deps.config.adminToken, deps.limits), async (ctx: AppContext) => {
    ctx.type = deps.metrics.registry.contentType;
    ctx.body = await deps.metrics.registry.metrics();
  });
  router.get('/ready', async (ctx: AppContext) => {
    const checks = await readiness(deps);
    const ready = Object.values(checks).every((c) => c === 'ok');
    ctx.status = ready ? 200 : 503;
    if (!ready) ctx.set('Retry-After', '1');
    ctx.body = { status: ready ? 'ready' : 'unavailable', checks };
  });
  return router;
}
