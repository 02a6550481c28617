/**
 * A worker process's own port (WORKER_PORT): /health, /ready (shared DB, Redis and its BullMQ workers) and /metrics
 * (admin token), the same routes as the API's, so an orchestrator can probe a worker and Prometheus can scrape it.
 */
import Koa from 'koa';
import type { Deps } from '../deps.js';
import { listenOn, type RunningServer } from './http-app.js';
import { requireAdmin } from '../orgs/entry-points/http/auth.js';
import { errorsAndAccessLog } from '../platform/http/errors.middleware.js';
import { healthRouter, readiness } from '../platform/http/health.routes.js';
import type { AppState } from '../platform/http/types.js';

/** What the worker's port uses of the deps. */
export type WorkerServerDeps = Pick<Deps, 'sharedDb' | 'redis' | 'logger' | 'metrics' | 'limits'> & {
  config: Pick<Deps['config'], 'adminToken' | 'queuePrefix'>;
};

/** The process's BullMQ workers by readiness check name (e.g. `deliveryWorker`): ready while each is running. */
export type RunningWorkers = Record<string, { isRunning(): boolean }>;

/** Builds the worker's Koa app (no listening). */
export function createWorkerApp(deps: WorkerServerDeps, workers: RunningWorkers): Koa<AppState> {
  const app = new Koa<AppState>();
  app.silent = true; // errors are logged once, by errorsAndAccessLog
  // No request-duration histogram: this port serves probes and scrapes, not traffic.
  app.use(errorsAndAccessLog(deps.logger));
  const running = Object.fromEntries(
    Object.entries(workers).map(([name, w]) => [
      name,
      () => {
        if (!w.isRunning()) throw new Error(`${name} is not running`);
      },
    ]),
  );
  const router = healthRouter({
    readiness: () => readiness(deps, running),
    metrics: deps.metrics.registry,
    admin: requireAdmin(deps.config.adminToken, deps.limits),
  });
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}

/** Listens on host:port (0 = ephemeral) and returns the URL; stop() closes it. */
export async function startWorkerServer(
  deps: WorkerServerDeps,
  workers: RunningWorkers,
  port: number,
  host = '127.0.0.1',
): Promise<RunningServer> {
  const { server, url } = await listenOn(createWorkerApp(deps, workers), port, host);
  return {
    url,
    server,
    async stop() {
      // Probes and scrapes are short: close their keep-alive sockets at once.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
