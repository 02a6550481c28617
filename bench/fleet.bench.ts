/**
 * The fleet: FLEET_TENANTS (10,000) tenants created through the normal path (`orgs.create`: database, MySQL user,
 * migrations, first key), then, side by side in one run on the same server and API process:
 *   1. GET /messages of one tenant;
 *   2. GET /messages over all tenants, requests drawn from Zipf(1.0) with a fixed seed (default TENANT_CACHE_MAX and
 *      TENANT_CONNECTIONS_MAX: instances and connections are separate budgets);
 * in the order 1 2 2 1, each the mean of its two runs; peak tenant connections (information_schema.PROCESSLIST) and
 * peak `Threads_connected` (SHOW STATUS) sampled throughout, the API process's RSS, evictions and switches. Then one
 * migration over the whole fleet through the CLI: `bin/tenant rollback --step 1 --force` (the newest tenant migration
 * off every tenant), then `bin/tenant migrate --concurrency 8 --skip-failing --json` timed (it applies it again).
 *
 *   npm run bench:fleet
 *
 * Tunables (defaults in brackets): FLEET_TENANTS [10000], BENCH_CONNECTIONS [20], BENCH_SECONDS [6],
 * FLEET_CREATE_CONCURRENCY [8], MIGRATE_CONCURRENCY [8]. Everything it creates is removed at the end.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type autocannon from 'autocannon';
import { QueryTypes, type Sequelize } from 'sequelize';
import { createDeps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import {
  closeAndCleanUp,
  commandLine,
  describeMachine,
  formatMs,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  runAutocannon,
  runBenchFile,
  runLoadThread,
  stopOnCtrlC,
  throwIfInterrupted,
  tunable,
  writeDocSection,
  zipfSequence,
  type CannonResult,
} from './bench-lib.js';

const DEFAULTS = {
  FLEET_TENANTS: '10000',
  BENCH_CONNECTIONS: '20',
  BENCH_SECONDS: '6',
  FLEET_CREATE_CONCURRENCY: '8',
  MIGRATE_CONCURRENCY: '8',
} as const;
const int = (name: keyof typeof DEFAULTS) => positiveInt(tunable(name, DEFAULTS), name);
const TENANTS = int('FLEET_TENANTS');
const CONNECTIONS = int('BENCH_CONNECTIONS');
const SECONDS = int('BENCH_SECONDS');
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Tenant {
  id: number;
  apiKey: string;
}
interface LoadSpec {
  url: string;
  tenants: Tenant[];
  seconds: number;
}

/** The load thread: GET /messages over the tenants' sequence. */
function loadThread(spec: LoadSpec): Promise<CannonResult> {
  const requests: autocannon.Request[] = spec.tenants.map((t) => ({
    method: 'GET',
    path: '/messages',
    headers: { 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` },
  }));
  return runAutocannon({ url: spec.url, connections: CONNECTIONS, duration: spec.seconds, requests });
}

/** Runs bin/tenant with the run's environment; answers its exit code, stdout and the seconds it took. */
function tenantCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(`${ROOT}bin/tenant`, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, seconds: (performance.now() - started) / 1000 }));
  });
}

async function count(root: Sequelize, sql: string, replacements: Record<string, unknown> = {}): Promise<number> {
  const [r] = await root.query<Record<string, unknown>>(sql, { replacements, type: QueryTypes.SELECT });
  return Number(Object.values(r ?? {}).at(-1) ?? 0);
}

async function main(): Promise<void> {
  stopOnCtrlC();
  const run = `fl${randomBytes(3).toString('hex')}`;
  const overrides = { RATE_LIMIT_POINTS: '100000000', AUTH_FAILURE_LIMIT: '100000000' };
  const config = loadRunConfig(run, overrides);
  const cliEnv = { DB_NAME: config.db.name, TENANT_DB_PREFIX: config.tenant.dbPrefix, QUEUE_PREFIX: run, LOG_LEVEL: 'error', ...overrides };
  const deps = createDeps(config, { role: 'api' });
  const log = (line: string) => console.error(line);
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 2 });
  let api: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await prepareRun(config, deps, true);
    log(`creating ${TENANTS} tenants…`);
    const createStarted = performance.now();
    let made = 0;
    const tenants: Tenant[] = await mapWithConcurrency(
      Array.from({ length: TENANTS }, (_, i) => `${run}-${i + 1}`),
      int('FLEET_CREATE_CONCURRENCY'),
      async (name) => {
        throwIfInterrupted();
        const { org, apiKey } = await deps.orgs.create({ name, credits: 100 });
        await root.query(
          `INSERT INTO \`${org.dbName!}\`.messages (\`to\`, channel, body, cost, status) VALUES ('+15551234567', 'sms', 'a', 1, 'SENT'), ('+15551234567', 'sms', 'b', 1, 'SENT')`,
        );
        if (++made % 1000 === 0) log(`  ${made} tenants`);
        return { id: org.id, apiKey: apiKey! };
      },
    );
    const createSeconds = (performance.now() - createStarted) / 1000;

    api = await startServer(deps, 0);
    const zipf = zipfSequence(tenants.length, 2000).map((i) => tenants[i]!);
    const distinct = new Set(zipf.map((t) => t.id)).size;
    const like = `${config.tenant.dbPrefix.replace(/_/g, '\\_')}%`;
    const peak = { tenantConnections: 0, threadsConnected: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak.tenantConnections = Math.max(
          peak.tenantConnections,
          await count(root, 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER LIKE :like', { like }),
        );
        peak.threadsConnected = Math.max(peak.threadsConnected, await count(root, "SHOW GLOBAL STATUS LIKE 'Threads_connected'"));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const results = new Map<string, CannonResult[]>();
    const url = api.url;
    for (const [name, sequence] of [
      ['one', [tenants[0]!]],
      ['fleet', zipf],
      ['fleet', zipf],
      ['one', [tenants[0]!]],
    ] as const) {
      throwIfInterrupted();
      await runLoadThread<LoadSpec, CannonResult>(import.meta.url, { url, tenants: [...sequence], seconds: 1 });
      const r = await runLoadThread<LoadSpec, CannonResult>(import.meta.url, { url, tenants: [...sequence], seconds: SECONDS });
      if ((r.statusCodes[200] ?? 0) !== r.responses) throw new Error(`${name}: not every answer was 200: ${JSON.stringify(r.statusCodes)}`);
      log(`${name}: ${(r.responses / r.seconds).toFixed(0)} req/s`);
      results.set(name, [...(results.get(name) ?? []), r]);
    }
    sampling = false;
    await sampler;
    const rss = process.memoryUsage().rss;
    const stats = deps.tenantDbs.stats();
    await api.stop(1000);
    api = undefined;

    log('rolling the newest tenant migration back on every tenant, then migrating the fleet…');
    const back = await tenantCli(
      ['rollback', '--step', '1', '--force', '--concurrency', tunable('MIGRATE_CONCURRENCY', DEFAULTS), '--json'],
      cliEnv,
    );
    if (back.code !== 0) throw new Error(`rollback exited ${back.code}`);
    const migrate = await tenantCli(
      ['migrate', '--concurrency', tunable('MIGRATE_CONCURRENCY', DEFAULTS), '--skip-failing', '--json'],
      cliEnv,
    );
    // The result is the last line (one JSON line per event of the rollout comes first).
    const summary = JSON.parse(migrate.stdout.trimEnd().split('\n').at(-1)!) as { results?: Array<{ result: string }> };
    const ok = (summary.results ?? []).filter((t) => t.result === 'ok').length;
    if (migrate.code !== 0 || ok !== TENANTS) throw new Error(`migrate exited ${migrate.code} with ${ok} of ${TENANTS} tenants ok`);

    const rate = (name: string) => results.get(name)!.reduce((s, r) => s + r.responses / r.seconds, 0) / results.get(name)!.length;
    const worst = (name: string, k: 'p50' | 'p99') => Math.max(...results.get(name)!.map((r) => r[k]));
    const machine = await describeMachine(root);
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${machine}.`,
      `Command: \`${commandLine('bench:fleet', Object.keys(DEFAULTS))}\`.`,
      `${TENANTS} tenants created through \`orgs.create\` (database, MySQL user, migrations, first key) in ${createSeconds.toFixed(0)} s ` +
        `(${(TENANTS / createSeconds).toFixed(1)} tenants/s, ${tunable('FLEET_CREATE_CONCURRENCY', DEFAULTS)} at a time), 2 messages each. ` +
        `${CONNECTIONS} connections, ${SECONDS} s per run after 1 s of warm-up, order one, fleet, fleet, one; the Zipf(1.0) sequence of 2,000 requests reaches ${distinct} tenants.`,
      `Settings: \`TENANT_CACHE_MAX=${config.tenant.cacheMax}\`, \`TENANT_CONNECTIONS_MAX=${config.tenant.connectionsMax}\`, \`TENANT_POOL_MAX=${config.tenant.poolMax}\`.`,
      '',
      markdownTable(['scenario', 'req/s (mean of 2)', 'p50 (ms, worst run)', 'p99 (ms, worst run)', 'ratio'], 'lrrrr', [
        ['GET /messages, 1 tenant', rate('one').toFixed(0), formatMs(worst('one', 'p50')), formatMs(worst('one', 'p99')), '1.00×'],
        [
          `GET /messages, ${TENANTS} tenants, Zipf(1.0)`,
          rate('fleet').toFixed(0),
          formatMs(worst('fleet', 'p50')),
          formatMs(worst('fleet', 'p99')),
          `${(rate('fleet') / rate('one')).toFixed(2)}×`,
        ],
      ]),
      '',
      `Peak MySQL connections of tenant users (PROCESSLIST): ${peak.tenantConnections} (budget ${config.tenant.connectionsMax}); ` +
        `peak \`Threads_connected\` of the whole server (SHOW STATUS; the shared-DB pool, this bench's sampler and anything else on it included): ${peak.threadsConnected}. ` +
        `API process RSS after the traffic: ${(rss / 2 ** 20).toFixed(0)} MiB (the bench and load threads included); ` +
        `instance cache: ${stats.misses} misses, ${stats.evictions} evictions; ${stats.switches} connection switches.`,
      `One migration over the fleet: \`bin/tenant rollback --step 1 --force\` took ${back.seconds.toFixed(0)} s, then ` +
        `\`bin/tenant migrate --concurrency ${tunable('MIGRATE_CONCURRENCY', DEFAULTS)}\` applied it to ${ok} of ${TENANTS} tenants in ` +
        `${migrate.seconds.toFixed(0)} s (${(TENANTS / migrate.seconds).toFixed(0)} tenants/s, shared DB first, a rollout: a lock per tenant, ` +
        `sessions reused per server; \`npm run bench:rollout\` has the rollout figures).`,
    ];
    console.log(lines.join('\n'));
    log(`wrote ${await writeDocSection('fleet', '## The fleet (10,000 tenants)', lines)}`);
  } finally {
    await api?.stop(1000).catch(() => undefined);
    await root.close();
    log('cleaning up (dropping every database and user of the run)…');
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main, loadThread);
