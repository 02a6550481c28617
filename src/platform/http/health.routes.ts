/** Liveness (cheap, no I/O) and readiness (shared DB, Redis and a process's own checks, each with a short timeout). */
import Router from '@koa/router';
import type { RedisClient } from '../lib/redis.js';
import type { Registry } from 'prom-client';
import type { Sequelize } from 'sequelize';
import type { Logger } from '../lib/logger.js';
import { withTimeout } from '../lib/timeout.js';
import type { AppContext, AppState } from './types.js';

const CHECK_TIMEOUT_MS = 1000;

/** What readiness checks: the shared DB and Redis. */
export interface ReadinessDeps {
  sharedDb: Pick<Sequelize, 'query'>;
  redis: Pick<RedisClient, 'exists'>;
  /** The key prefix: the check reads a key of the project's slot (on a cluster, a PING would reach any node). */
  config: { queuePrefix: string };
  logger: Logger;
}

/**
 * Runs the readiness checks; each is 'ok' or 'unavailable' (the reason goes to the log only). `extra` adds checks of
 * the process (a worker's BullMQ workers): each fails by throwing or rejecting, under the same timeout.
 */
export async function readiness(deps: ReadinessDeps, extra: Record<string, () => unknown> = {}): Promise<Record<string, string>> {
  const checks: Record<string, () => unknown> = {
    sharedDb: () => deps.sharedDb.query('SELECT 1'),
    // The master that holds the project's keys answers (fail-fast client: reconnects by itself, no offline queue).
    redis: () => deps.redis.exists(`${deps.config.queuePrefix}:ready`),
    ...extra,
  };
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        await withTimeout(Promise.resolve().then(check), CHECK_TIMEOUT_MS);
        return [name, 'ok'] as const;
      } catch (err) {
        // The reason goes to the log only: /ready is public, and driver errors name hosts and users.
        deps.logger.warn('readiness check failed', { check: name, err: (err as Error).message });
        return [name, 'unavailable'] as const;
      }
    }),
  );
  return Object.fromEntries(entries);
}

/** What the health routes use. */
export interface HealthRouterDeps {
  readiness: () => Promise<Record<string, string>>;
  metrics: Registry;
  /** Authenticates the admin (for /metrics). */
  admin: (ctx: AppContext, next: () => Promise<unknown>) => Promise<unknown>;
}

/** Builds /health, /ready and /metrics (admin token). */
export function healthRouter(deps: HealthRouterDeps): Router<AppState> {
  const router = new Router<AppState>();
  router.get('/health', (ctx: AppContext) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/metrics', deps.admin, async (ctx: AppContext) => {
    ctx.type = deps.metrics.contentType;
    ctx.body = await deps.metrics.metrics();
  });
  router.get('/ready', async (ctx: AppContext) => {
    const checks = await deps.readiness();
    const ready = Object.values(checks).every((c) => c === 'ok');
    ctx.status = ready ? 200 : 503;
    if (!ready) ctx.set('Retry-After', '1');
    ctx.body = { status: ready ? 'ready' : 'unavailable', checks };
  });
  return router;
}
