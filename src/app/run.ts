/**
 * One process of the service: config → deps → shared-DB migrations → API and/or delivery workers, with the signal
 * handling (only here). Started by src/main.ts (`--role all|api|worker`) and workers/worker.ts (`worker`).
 */
import { ConfigError, DEV_ADMIN_TOKEN, DEV_SECRET_KEY, loadConfig, loadDotEnv, type Config } from '../../config/config.js';
import { startWorkers, type Workers } from '../messages/entry-points/queue/workers.js';
import { prepareSharedDb } from '../platform/db/shared-db.js';
import { redisSettingProblems } from '../platform/queue/redis-check.js';
import { startMetricsServer } from '../platform/metrics/metrics-server.js';
import { createDeps } from '../deps.js';
import { startServer, type RunningServer } from './http-app.js';
import { startWorkerServer } from './worker-server.js';
import { tracing, tracingWanted } from '../platform/telemetry/tracing.js';

/** What a process runs: the API and the workers (`all`), or one of them. */
export type Role = 'all' | 'api' | 'worker';

function readConfig(): Config {
  loadDotEnv();
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** Runs the process until a signal stops it. */
export async function runProcess(role: Role): Promise<void> {
  const config = readConfig();
  const deps = createDeps(config, { role });
  const { logger } = deps;
  const applied = await prepareSharedDb(config, deps.sharedDb);
  const server = await deps.servers.ensureDefault();
  for (const problem of await redisSettingProblems(deps.redis)) logger.warn(problem);
  if (tracingWanted(process.env) && !tracing.enabled)
    logger.warn(
      'OTEL_* variables ask for traces, but the tracing preload did not run: start with node --import ./src/platform/telemetry/preload.ts',
    );
  if (config.adminToken === DEV_ADMIN_TOKEN || config.secretKey === DEV_SECRET_KEY) {
    logger.warn(
      'USING THE PUBLIC DEVELOPMENT ADMIN_TOKEN / SECRET_KEY: anyone who can reach this port can administer it. Set both (and NODE_ENV=production) outside development.',
    );
  }
  logger.info('shared database ready', {
    database: config.db.name,
    migrationsApplied: applied,
    defaultServer: `${server.host}:${server.port}`,
  });

  let api: RunningServer | undefined;
  let worker: Workers | undefined;
  if (role !== 'api') {
    worker = startWorkers(config, deps);
    logger.info('workers started', {
      deliveryConcurrency: config.delivery.concurrency,
      webhookConcurrency: config.webhooks.concurrency,
      gateway: config.gateway,
    });
  }
  if (role !== 'worker') {
    api = await startServer(deps, config.port, config.host);
    // API processes keep the warm pool topped up (one at a time, under a lock), so that creates only claim.
    deps.pool.start();
  }
  // A worker alone gets its own port for probes and scrapes; with --role all the API serves the same routes.
  const workerServer =
    role === 'worker' && worker
      ? await startWorkerServer(
          deps,
          { deliveryWorker: worker.delivery.worker, webhookWorker: worker.webhooks.worker },
          config.workerPort,
          config.host,
        )
      : undefined;

  const metricsServer = config.metricsPort === undefined ? undefined : await startMetricsServer(deps.metrics.registry, config.metricsPort);
  if (metricsServer) logger.info('metrics listening (no credentials, localhost only)', { url: metricsServer.url });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      logger.warn('second signal: forcing exit', { signal });
      process.exit(1);
    }
    stopping = true;
    const budget = config.shutdownTimeoutMs;
    const deadline = Date.now() + budget;
    const left = () => Math.max(0, deadline - Date.now());
    logger.info('shutting down', { signal, deadlineMs: budget });
    // Past the deadline and a little more, nothing is waited for any longer.
    setTimeout(() => {
      logger.error('shutdown deadline passed: exiting', { deadlineMs: budget });
      process.exit(1);
    }, budget + 2000).unref();
    // Stop taking work first (HTTP and jobs), let what is in flight finish, then release the pools; each step is bounded
    // by what is left of SHUTDOWN_TIMEOUT_MS, after which connections and jobs are force-closed.
    Promise.all([api?.stop(budget), worker?.close(budget), workerServer?.stop(), metricsServer?.close()])
      .then(() => deps.close(left()))
      .then(() => tracing.shutdown())
      .then(
        () => process.exit(0),
        (err: Error) => {
          logger.error('shutdown failed', { err: err.message });
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // The banner comes last, once signals are handled: a SIGTERM right after it must still shut down gracefully.
  if (api) {
    process.stdout.write(
      [
        '',
        `  Tenancy messaging API listening on ${api.url}${worker ? ' (with delivery workers)' : ''}`,
        `  Health:    ${api.url}/health   Readiness: ${api.url}/ready`,
        `  Create your first tenant:  bin/tenant create "Acme Inc" --credits 100`,
        `    or: curl -X POST ${api.url}/orgs -H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json" -d '{"name":"Acme Inc"}'`,
        '',
      ].join('\n') + '\n',
    );
  }
  if (workerServer) {
    const { url } = workerServer;
    process.stdout.write(
      `\n  Tenancy messaging worker listening on ${url}  Health: ${url}/health  Readiness: ${url}/ready  Metrics: ${url}/metrics (admin token)\n\n`,
    );
  }
}
