/** The Koa application factory and a start/stop wrapper that listens on any port (0 in tests). */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import Koa from 'koa';
import type { Deps } from '../deps.js';
import { dashboard } from './dashboard.js';
import { docsRouter } from './docs.routes.js';
import { errorsAndAccessLog } from '../platform/http/errors.middleware.js';
import { requireAdmin } from '../orgs/entry-points/http/auth.js';
import { healthRouter, readiness } from '../platform/http/health.routes.js';
import { jsonBody } from '../platform/http/json-body.js';
import { answerClientErrorsInJson } from '../platform/http/client-errors.js';
import { orgsRouter } from '../orgs/entry-points/http/orgs.routes.js';
import { messagesRouter } from '../messages/entry-points/http/messages.routes.js';
import { ownOrgRouter } from '../orgs/entry-points/http/org.routes.js';
import { deliveryLoadRouter } from '../messages/entry-points/http/delivery-load.routes.js';
import type { AppState } from '../platform/http/types.js';

/** Builds the Koa app over the given deps (no listening). */
export function createApp(deps: Deps): Koa<AppState> {
  const app = new Koa<AppState>({ proxy: deps.config.trustProxy > 0, maxIpsCount: deps.config.trustProxy }); // TRUST_PROXY hops: ctx.ip is the X-Forwarded-For entry that many from the right
  app.silent = true; // errors are logged once, by errorsAndAccessLog
  app.use(errorsAndAccessLog(deps.logger, deps.metrics.httpDuration));
  // Before jsonBody: bull-board parses its own bodies.
  app.use(
    dashboard({
      queues: [deps.deliveryQueue, deps.webhookQueue],
      adminToken: deps.config.adminToken,
      readOnly: deps.config.dashboardReadOnly,
      limits: deps.limits,
    }),
  );
  app.use(jsonBody(deps.config.bodyLimit));
  const admin = requireAdmin(deps.config.adminToken, deps.limits);
  // The tenant routes first: they are the hot path, and each router tries its own routes before passing a request on.
  const routers = [
    messagesRouter({ registry: deps.registry, limits: deps.limits, messages: deps.messages }),
    ownOrgRouter({ registry: deps.registry, limits: deps.limits, orgs: deps.orgs }),
    healthRouter({ readiness: () => readiness(deps), metrics: deps.metrics.registry, admin }),
    orgsRouter({ orgs: deps.orgs, admin, defaultCredits: deps.config.defaultCredits }),
    deliveryLoadRouter({ orgs: deps.orgs, deliveryLoad: deps.deliveryLoad, admin }),
    docsRouter(),
  ];
  for (const router of routers) {
    app.use(router.routes());
    // Not thrown: the router then sets `Allow`, and the error middleware turns the bare 405/501 into the JSON shape.
    app.use(router.allowedMethods());
  }
  return app;
}

export interface RunningServer {
  url: string;
  server: Server;
  /** Stops accepting, waits for in-flight requests (up to graceMs), then closes idle sockets. */
  stop(graceMs?: number): Promise<void>;
}

/** Listens on host:port (0 = any free port); answers the server and the URL to print for it. */
export async function listenOn(app: Koa<AppState>, port: number, host: string): Promise<{ server: Server; url: string }> {
  const server = app.listen(port, host);
  answerClientErrorsInJson(server);
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const { port: actual } = server.address() as AddressInfo;
  return { server, url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${actual}` };
}

/** Listens on host:port and returns the URL. */
export async function startServer(deps: Deps, port: number, host = '127.0.0.1'): Promise<RunningServer> {
  const { server, url } = await listenOn(createApp(deps), port, host);
  server.keepAliveTimeout = 5000;
  return {
    url,
    server,
    async stop(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
