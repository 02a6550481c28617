/** Entry point: config → deps → shared-DB migrations → API (and, later, workers). Signals are handled only here. */
import { ConfigError, loadConfig, loadDotEnv } from '../config/config.js';
import { prepareSharedDb } from './db/shared-db.js';
import { createDeps } from './deps.js';
import { startServer } from './http/app.js';

async function main(): Promise<void> {
  loadDotEnv();
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const deps = createDeps(config);
  const { logger } = deps;
  const applied = await prepareSharedDb(config, deps.sharedDb);
  const server = await deps.servers.ensureDefault();
  logger.info('shared database ready', { database: config.db.name, migrationsApplied: applied, defaultServer: `${server.host}:${server.port}` });
  const api = await startServer(deps, config.port, config.host);

  process.stdout.write([
    '',
    `  Tenancy messaging API listening on ${api.url}`,
    `  Health:    ${api.url}/health   Readiness: ${api.url}/ready`,
    `  Create your first tenant:  bin/tenant create "Acme Inc" --credits 100`,
    `    or: curl -X POST ${api.url}/orgs -H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json" -d '{"name":"Acme Inc"}'`,
    '',
  ].join('\n') + '\n');

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      logger.warn('second signal: forcing exit', { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info('shutting down', { signal });
    api.stop(10_000)
      .then(() => deps.close())
      .then(() => process.exit(0), (err: Error) => {
        logger.error('shutdown failed', { err: err.message });
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: Error) => {
  process.stderr.write(`fatal: ${err.message}\n`);
  process.exit(1);
});
