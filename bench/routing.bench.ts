/**
 * Tenant routing against a bare baseline, side by side in one run (issue 10): the API's GET /messages and
 * POST /messages against the same work done by bare Koa + mysql2 (and BullMQ for the add), then GET /messages over
 * many tenants under Zipf(1.0) traffic against the one-tenant run of the same API.
 *
 *   1. bare GET:  Koa + a mysql2 pool of BENCH_CONNECTIONS connections, the same SELECT of the 20 newest rows;
 *   2. API GET /messages, 1 tenant;
 *   3. API GET /messages, TENANTS tenants (created through the normal path), requests drawn from Zipf(1.0) with a fixed
 *      seed; the API runs with its default TENANT_CACHE_MAX and TENANT_CONNECTIONS_MAX;
 *   4. bare POST: Koa + JSON body + the same INSERT + a BullMQ add with a derived job id;
 *   5. API POST /messages, 1 tenant (no worker: only acceptance is measured).
 * Each GET variant runs twice in the order 1 2 3 3 2 1 (then 4 5 5 4) and reports the mean of its runs, with the CPU
 * per request of the serving thread, of MariaDB and of Redis (/proc), and the ratio those give. Peak MySQL connections
 * of the tenant users (information_schema.PROCESSLIST, sampled) and the process RSS are reported too.
 *
 *   npm run bench:routing
 *
 * Tunables (defaults in brackets): BENCH_CONNECTIONS [20], BENCH_SECONDS [6], TENANTS [1000], TENANT_CACHE_MAX and
 * TENANT_CONNECTIONS_MAX [the app's defaults]. Everything it creates is removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Server } from 'node:http';
import type autocannon from 'autocannon';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import Koa from 'koa';
import mysql from 'mysql2/promise';
import { QueryTypes } from 'sequelize';
import { createDeps, type Deps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import {
  closeAndCleanUp,
  commandLine,
  cpuOf,
  databasePid,
  describeMachine,
  formatMs,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  redisPid,
  runAutocannon,
  runBenchFile,
  runLoadThread,
  safeSqlName,
  stopOnCtrlC,
  throwIfInterrupted,
  tunable,
  writeDocSection,
  zipfSequence,
  type CannonResult,
} from './bench-lib.js';
import type { ProfileWindow } from './profile-windows.js';

const DEFAULTS = { BENCH_CONNECTIONS: '20', BENCH_SECONDS: '6', TENANTS: '1000' } as const;
const CONNECTIONS = positiveInt(tunable('BENCH_CONNECTIONS', DEFAULTS), 'BENCH_CONNECTIONS');
const SECONDS = positiveInt(tunable('BENCH_SECONDS', DEFAULTS), 'BENCH_SECONDS');
const TENANTS = positiveInt(tunable('TENANTS', DEFAULTS), 'TENANTS');
/** For profiling (node --cpu-prof): run only these scenarios (comma-separated names), once each; docs are left alone. */
const ONLY = process.env.BENCH_ONLY?.split(',');
/**
 * With BENCH_ONLY, the directory of the --cpu-prof profile: each run's window is written to windows.json there, for
 * bench/profile-windows.ts (e.g. `profile-windows.ts <dir> 40 barePost apiPost1`: what the API does more per POST).
 */
const PROF_DIR = process.env.BENCH_PROF_DIR;
const ROWS_PER_TENANT = 30;
/** Length of the Zipf request sequence: autocannon builds every request of it for each connection, so keep it short. */
const ZIPF_REQUESTS = 2000;
const MESSAGE = { to: '+15551234567', channel: 'sms', body: 'Hello from the routing bench' };
const LIST_SQL = 'SELECT * FROM messages ORDER BY id DESC LIMIT 20';

interface Tenant {
  id: number;
  apiKey: string;
  dbName: string;
}
interface LoadSpec {
  url: string;
  method: 'GET' | 'POST';
  /** The sequence of tenants the requests go to (cycled by every connection from its own starting point). */
  tenants: Tenant[];
  seconds: number;
}

/** The load thread: autocannon over the tenants' sequence. */
function loadThread(spec: LoadSpec): Promise<CannonResult> {
  const body = JSON.stringify(MESSAGE);
  const requests: autocannon.Request[] = spec.tenants.map((t) => ({
    method: spec.method,
    path: '/messages',
    headers: { 'content-type': 'application/json', 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` },
    ...(spec.method === 'POST' ? { body } : {}),
  }));
  return runAutocannon({ url: spec.url, connections: CONNECTIONS, duration: spec.seconds, requests });
}

/** The bare baseline: Koa and a mysql2 pool (and, for POST, a BullMQ queue) doing the same work, nothing else. */
async function startBare(opts: {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  redisUrl: string;
  prefix: string;
}) {
  const { host, port, user, password, database } = opts;
  const pool = mysql.createPool({
    host,
    port,
    user,
    password,
    database,
    connectionLimit: CONNECTIONS,
    supportBigNumbers: true,
    timezone: 'Z',
  });
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('bare-bench', { connection: redis, prefix: opts.prefix });
  const app = new Koa();
  app.use(async (ctx) => {
    if (ctx.method === 'GET') {
      const [rows] = await pool.query(LIST_SQL);
      ctx.body = rows;
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of ctx.req) chunks.push(c as Buffer);
    const m = JSON.parse(Buffer.concat(chunks).toString()) as typeof MESSAGE;
    const [r] = await pool.execute<mysql.ResultSetHeader>('INSERT INTO messages (`to`, channel, body, cost) VALUES (?, ?, ?, 1)', [
      m.to,
      m.channel,
      m.body,
    ]);
    await queue.add('deliver', { messageId: r.insertId }, { jobId: `bare-${r.insertId}`, removeOnComplete: true });
    ctx.status = 202;
    ctx.body = { success: true, message: { id: r.insertId, ...m, status: 'QUEUED', cost: 1 } };
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    async stop() {
      await new Promise((r) => server.close(r));
      await pool.end();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      redis.disconnect();
    },
  };
}

async function main(): Promise<void> {
  stopOnCtrlC();
  const run = `rb${randomBytes(3).toString('hex')}`;
  const config = loadRunConfig(run, { RATE_LIMIT_POINTS: '100000000', AUTH_FAILURE_LIMIT: '100000000' });
  const deps: Deps = createDeps(config, { role: 'api' });
  const log = (line: string) => console.error(line);
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 2 });
  let bare: Awaited<ReturnType<typeof startBare>> | undefined;
  let api: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await prepareRun(config, deps, true);
    log(`creating ${TENANTS} tenants with ${ROWS_PER_TENANT} messages each…`);
    const names = Array.from({ length: TENANTS }, (_, i) => `${run}-${i + 1}`);
    const tenants: Tenant[] = await mapWithConcurrency(names, 4, async (name) => {
      throwIfInterrupted();
      const { org, apiKey } = await deps.orgs.create({ name, credits: 1_000_000 });
      const dbName = safeSqlName(org.dbName!);
      await root.query(
        `INSERT INTO \`${dbName}\`.messages (\`to\`, channel, body, cost, status) VALUES ${Array(ROWS_PER_TENANT).fill("('+15551234567', 'sms', 'seeded', 1, 'SENT')").join(',')}`,
      );
      return { id: org.id, apiKey: apiKey!, dbName };
    });
    const hot = tenants[0]!;
    const zipf = zipfSequence(tenants.length, ZIPF_REQUESTS).map((i) => tenants[i]!);
    const distinct = new Set(zipf.map((t) => t.id)).size;

    bare = await startBare({ ...config.db, password: config.db.password, database: hot.dbName, redisUrl: config.redisUrl, prefix: run });
    api = await startServer(deps, 0);
    const url = api.url;
    const thread = (spec: Omit<LoadSpec, 'seconds'>) =>
      runLoadThread<LoadSpec, CannonResult>(import.meta.url, { ...spec, seconds: SECONDS });

    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [r] = await root.query<{ n: number }>('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER LIKE :like', {
          replacements: { like: `${config.tenant.dbPrefix.replace(/_/g, '\\_')}%` },
          type: QueryTypes.SELECT,
        });
        peak = Math.max(peak, Number(r?.n ?? 0));
        await new Promise((res) => setTimeout(res, 100));
      }
    })();

    const results = new Map<string, CannonResult[]>();
    // CPU per request of this process's main thread (the API or the bare server, whichever is loaded: autocannon has a
    // thread of its own), of the database server and of Redis: on a shared 2-core machine these move far less from run
    // to run than requests per second do.
    const dbPid = await databasePid(root);
    const redisInfo = new Redis(config.redisUrl);
    const cachePid = await redisPid(redisInfo).finally(() => redisInfo.disconnect());
    const cpuNow = async () => ({
      main: await cpuOf(process.pid, process.pid),
      servers: (dbPid ? await cpuOf(dbPid) : 0) + (cachePid ? await cpuOf(cachePid) : 0),
    });
    const costs = new Map<string, { responses: number; main: number; servers: number }>();
    const windows: ProfileWindow[] = [];
    const micros = () => Number(process.hrtime.bigint() / 1000n);
    const record = async (name: string, spec: Omit<LoadSpec, 'seconds'>) => {
      throwIfInterrupted();
      if (ONLY && (!ONLY.includes(name) || results.has(name))) return;
      // A short warm-up of the same traffic, not measured.
      await runLoadThread<LoadSpec, CannonResult>(import.meta.url, { ...spec, seconds: 1 });
      const before = await cpuNow();
      const start = micros();
      const r = await thread(spec);
      windows.push({ name, start, end: micros(), responses: r.responses });
      const after = await cpuNow();
      const cost = costs.get(name) ?? { responses: 0, main: 0, servers: 0 };
      costs.set(name, {
        responses: cost.responses + r.responses,
        main: cost.main + after.main - before.main,
        servers: cost.servers + after.servers - before.servers,
      });
      const ok = (r.statusCodes[spec.method === 'GET' ? 200 : 202] ?? 0) / r.responses;
      if (ok < 1) throw new Error(`${name}: only ${(ok * 100).toFixed(1)} % of answers were right: ${JSON.stringify(r.statusCodes)}`);
      log(`${name}: ${(r.responses / r.seconds).toFixed(0)} req/s`);
      results.set(name, [...(results.get(name) ?? []), r]);
    };
    const bareUrl = bare.url;
    const order: Array<[string, Omit<LoadSpec, 'seconds'>]> = [
      ['bareGet', { url: bareUrl, method: 'GET', tenants: [hot] }],
      ['apiGet1', { url, method: 'GET', tenants: [hot] }],
      ['apiGetZipf', { url, method: 'GET', tenants: zipf }],
    ];
    for (const [name, spec] of [...order, ...[...order].reverse()]) await record(name, spec);
    const posts: Array<[string, Omit<LoadSpec, 'seconds'>]> = [
      ['barePost', { url: bareUrl, method: 'POST', tenants: [hot] }],
      ['apiPost1', { url, method: 'POST', tenants: [hot] }],
    ];
    for (const [name, spec] of [...posts, ...[...posts].reverse()]) await record(name, spec);
    sampling = false;
    await sampler;
    if (ONLY && PROF_DIR) await writeFile(path.join(PROF_DIR, 'windows.json'), JSON.stringify(windows));
    if (ONLY) return;

    const rate = (name: string) => {
      const rs = results.get(name)!;
      return rs.reduce((sum, r) => sum + r.responses / r.seconds, 0) / rs.length;
    };
    const p = (name: string, key: 'p50' | 'p99') => Math.max(...results.get(name)!.map((r) => r[key]));
    const stats = deps.tenantDbs.stats();
    const perRequest = (name: string, key: 'main' | 'servers') => (1e6 * costs.get(name)![key]) / costs.get(name)!.responses;
    const total = (name: string) => perRequest(name, 'main') + perRequest(name, 'servers');
    const row = (label: string, name: string, base: string, baseLabel: string) => [
      label,
      rate(name).toFixed(0),
      formatMs(p(name, 'p50')),
      formatMs(p(name, 'p99')),
      `${(rate(name) / rate(base)).toFixed(2)}× ${baseLabel}`,
      perRequest(name, 'main').toFixed(0),
      dbPid && cachePid ? perRequest(name, 'servers').toFixed(0) : 'n/a',
      dbPid && cachePid ? `${(total(base) / total(name)).toFixed(2)}×` : 'n/a',
    ];
    const table = markdownTable(
      [
        'scenario',
        'req/s (mean of 2)',
        'p50 (ms, worst run)',
        'p99 (ms, worst run)',
        'ratio',
        'server CPU µs/req',
        'MariaDB + Redis CPU µs/req',
        'CPU ratio',
      ],
      'lrrrlrrr',
      [
        row('bare Koa + mysql2 pool, GET (same SELECT)', 'bareGet', 'bareGet', 'bare GET'),
        row('API GET /messages, 1 tenant', 'apiGet1', 'bareGet', 'bare GET'),
        row(`API GET /messages, ${TENANTS} tenants, Zipf(1.0)`, 'apiGetZipf', 'apiGet1', 'API 1 tenant'),
        row('bare Koa + mysql2 INSERT + BullMQ add, POST', 'barePost', 'barePost', 'bare POST'),
        row('API POST /messages, 1 tenant', 'apiPost1', 'barePost', 'bare POST'),
      ],
    );
    const machine = await describeMachine(root);
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${machine}.`,
      `Command: \`${commandLine('bench:routing', ['BENCH_CONNECTIONS', 'BENCH_SECONDS', 'TENANTS', 'TENANT_CACHE_MAX', 'TENANT_CONNECTIONS_MAX'])}\`.`,
      `${CONNECTIONS} connections (autocannon in a thread of its own), ${SECONDS} s measured per run after 1 s of warm-up; order 1 2 3 3 2 1, then 4 5 5 4.`,
      `Settings: \`TENANT_CACHE_MAX=${config.tenant.cacheMax}\`, \`TENANT_CONNECTIONS_MAX=${config.tenant.connectionsMax}\`, \`TENANT_POOL_MAX=${config.tenant.poolMax}\`; the Zipf sequence reaches ${distinct} of the ${TENANTS} tenants.`,
      '',
      table,
      '',
      'Server CPU: the main thread of the process serving the scenario (the API, or the bare server), per request; ' +
        "MariaDB + Redis: both servers' processes (shared with anything else running meanwhile). CPU ratio: the baseline's " +
        "CPU per request (server + MariaDB + Redis) over the scenario's, the ratio requests per second would have with " +
        'the load generator aside, and far steadier from run to run on a shared machine.',
      `Peak MySQL connections of tenant users during the whole run: ${peak} (budget ${config.tenant.connectionsMax}); ` +
        `switches ${stats.switches}, instance cache misses ${stats.misses}, evictions ${stats.evictions}; ` +
        `process RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB (API, bench and load threads together).`,
    ];
    console.log(lines.join('\n'));
    log(`wrote ${await writeDocSection('routing', '## Tenant routing (GET and POST /messages against bare Koa + mysql2)', lines)}`);
  } finally {
    await api?.stop(1000).catch(() => undefined);
    await bare?.stop().catch(() => undefined);
    await root.close();
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main, loadThread);
