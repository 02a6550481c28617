/**
 * Message throughput benchmark, against the real MariaDB/MySQL server and Redis of the config, all in one run:
 *
 * 1. Baseline on the same Redis: bare BullMQ `add` of N jobs (`{orgId, messageId}`, custom job id, the delivery
 *    queue's job options; as many adds in flight as the load generator has connections), then a no-op Worker at the
 *    delivery concurrency draining them.
 * 2. For 1 and for 50 tenants: `POST /messages` ×N through the real API (`startServer`) with autocannon, no worker
 *    running → accepted (202) per second; then the real delivery worker (`startWorkers`, simulated gateway with
 *    zero latency) until every accepted message is SENT → delivered per second. Every message must end SENT and every
 *    tenant's balance must equal its ledger sum.
 *
 * Prints the table and rewrites its section of docs/benchmarks.md. Everything it creates (databases, MySQL users,
 * Redis keys under the run's prefix) is removed at the end.
 *
 *   npm run bench:messages [-- --n 15000]      (or BENCH_MESSAGES=15000; default 15000 messages per scenario)
 *
 * Tunables read from the environment (defaults in brackets): WORKER_CONCURRENCY [50], TENANT_CACHE_MAX [60],
 * TENANT_POOL_MAX [the app's default], DB_POOL_MAX [the app's default], BENCH_CONNECTIONS [50].
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker as Thread, workerData } from 'node:worker_threads';
import autocannon from 'autocannon';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { QueryTypes, type Sequelize } from 'sequelize';
import { loadConfig, type Config } from '../config/config.js';
import { createSequelize } from '../src/db/sequelize.js';
import { prepareSharedDb } from '../src/db/shared-db.js';
import { createDeps, type Deps } from '../src/deps.js';
import { startServer } from '../src/http/app.js';
import { mapWithConcurrency } from '../src/lib/concurrency.js';
import type { DeliveryJob } from '../src/queue/queues.js';
import { startWorkers } from '../workers/workers.js';

const DOC = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));
const START = '<!-- bench:messages:start -->';
const END = '<!-- bench:messages:end -->';
const SAFE_NAME = /^[A-Za-z0-9_]+$/;
const BASELINE_QUEUE = 'baseline';
const TENANT_COUNTS = [1, 50] as const;
const CREATE_CONCURRENCY = 4;
/** A delivery run fails when no job completes for this long (a stuck run, not a slow one). */
const STALL_MS = 30_000;
/** The request body: one sms segment, so one credit per message. */
const MESSAGE = { to: '+15551230000', channel: 'sms', body: 'benchmark message' } as const;
/** Tunables the caller may set in the environment, with the benchmark's defaults. */
const TUNABLE_DEFAULTS: Record<string, string | undefined> = {
  WORKER_CONCURRENCY: '50', TENANT_CACHE_MAX: '60', TENANT_POOL_MAX: undefined, DB_POOL_MAX: undefined, BENCH_CONNECTIONS: '50',
};

interface Tenant {
  id: number;
  apiKey: string;
  dbName: string;
}

/** What the load-generator thread is asked to do. */
interface LoadSpec {
  url: string;
  connections: number;
  amount: number;
  tenants: { id: number; apiKey: string }[];
}

/** What it answers (a plain object: it crosses the thread boundary). */
interface LoadResult {
  seconds: number;
  responses: number;
  statusCodes: Record<string, number>;
  errors: number;
  timeouts: number;
  p50: number;
  p99: number;
}

interface Baseline {
  n: number;
  addSeconds: number;
  addP50: number;
  addP99: number;
  drainSeconds: number;
}

interface Scenario {
  tenants: number;
  accepted: number;
  load: LoadResult;
  deliverSeconds: number;
  failedAttempts: number;
}

let interrupted = false;

/** Throws once Ctrl-C was pressed, so that the run stops between steps and still cleans up. */
function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted');
}

/** A positive integer from a string, or a clear error naming where it came from. */
function positiveInt(raw: string, what: string): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** N (messages per scenario, and jobs of the baseline) from --n, else BENCH_MESSAGES, else 15000. */
function messageCount(): number {
  const { values } = parseArgs({ options: { n: { type: 'string' } } });
  return positiveInt(values.n ?? process.env.BENCH_MESSAGES ?? '15000', 'N');
}

/** The value at quantile q (0..1) of sorted numbers. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Resolves once `worker` has completed `n` jobs; counts failed attempts; rejects when nothing completes for STALL_MS. */
function completions<T, R>(worker: Worker<T, R>, n: number, ok: (result: R) => boolean): { done: Promise<void>; failedAttempts(): number } {
  let completed = 0;
  let failed = 0;
  let notOk = 0;
  const done = new Promise<void>((resolve, reject) => {
    let stall: NodeJS.Timeout;
    const finish = (err?: Error) => {
      clearTimeout(stall);
      worker.off('completed', onCompleted);
      worker.off('failed', onFailed);
      if (err) reject(err);
      else resolve();
    };
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => finish(new Error(`no job completed for ${STALL_MS / 1000} s: ${completed} of ${n} completed, ${failed} failed attempts`)), STALL_MS);
    };
    const onCompleted = (_job: Job<T, R>, result: R) => {
      completed++;
      if (!ok(result)) notOk++;
      if (completed >= n) finish(notOk ? new Error(`${notOk} of ${n} jobs completed with an unexpected result`) : undefined);
      else arm();
    };
    const onFailed = () => {
      failed++;
    };
    worker.on('completed', onCompleted);
    worker.on('failed', onFailed);
    if (n === 0) finish();
    else arm();
  });
  return { done, failedAttempts: () => failed };
}

/** Bare BullMQ on the same Redis: N adds (`inflight` at a time, each timed), then a no-op worker draining them. */
async function baseline(config: Config, n: number, inflight: number): Promise<Baseline> {
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const workerConnection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  // The job options of the delivery queue (src/queue/queues.ts), so each add writes the same job shape.
  const queue = new Queue<DeliveryJob>(BASELINE_QUEUE, {
    connection,
    prefix: config.queuePrefix,
    defaultJobOptions: {
      attempts: config.delivery.attempts,
      backoff: { type: 'exponential', delay: config.delivery.backoffMs, jitter: 0.5 },
      removeOnComplete: { count: 1000 },
      removeOnFail: false,
    },
  });
  let worker: Worker<DeliveryJob, string> | undefined;
  try {
    await queue.waitUntilReady();
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    const latencies: number[] = [];
    const started = performance.now();
    await mapWithConcurrency(ids, inflight, async (messageId) => {
      const t0 = performance.now();
      await queue.add('deliver', { orgId: 1, messageId }, { jobId: `base-1-${messageId}` });
      latencies.push(performance.now() - t0);
    });
    const addSeconds = (performance.now() - started) / 1000;
    const waiting = await queue.getWaitingCount();
    if (waiting !== n) throw new Error(`baseline: ${waiting} jobs waiting after ${n} adds`);
    checkInterrupted();

    const drainStarted = performance.now();
    worker = new Worker<DeliveryJob, string>(BASELINE_QUEUE, async () => 'SENT', {
      connection: workerConnection, prefix: config.queuePrefix, concurrency: config.delivery.concurrency, maxStalledCount: 10,
    });
    worker.on('error', () => undefined);
    const watch = completions(worker, n, (r) => r === 'SENT');
    await watch.done;
    const drainSeconds = (performance.now() - drainStarted) / 1000;
    latencies.sort((a, b) => a - b);
    return { n, addSeconds, addP50: quantile(latencies, 0.5), addP99: quantile(latencies, 0.99), drainSeconds };
  } finally {
    await worker?.close();
    await queue.close();
    connection.disconnect();
    workerConnection.disconnect();
  }
}

/** Runs the load generator in its own thread (this same file), so that it does not share the API's event loop. */
function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    // tsx registers its loader in the main thread only (on Node 20 a worker does not inherit it): register it here, then load this file.
    const code = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); });`;
    const thread = new Thread(code, { eval: true, workerData: spec });
    thread.once('message', (msg: { result?: LoadResult; error?: string }) => {
      void thread.terminate();
      if (msg.result) resolve(msg.result);
      else reject(new Error(`load generator: ${msg.error}`));
    });
    thread.once('error', reject);
    thread.once('exit', (code) => reject(new Error(`load generator exited with code ${code} before answering`)));
  });
}

/** The load-generator thread: autocannon over `POST /messages`, each connection starting at another tenant. */
async function loadThread(spec: LoadSpec): Promise<LoadResult> {
  const body = JSON.stringify(MESSAGE);
  const requests: autocannon.Request[] = spec.tenants.map((t) => ({
    method: 'POST',
    path: '/messages',
    headers: { 'content-type': 'application/json', 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` },
    body,
  }));
  let clients = 0;
  // Statuses and latencies are taken from the response events: in a worker thread autocannon answers its raw,
  // unaggregated result (encoded histograms); its error and timeout counters are plain numbers either way.
  const statusCodes: Record<string, number> = {};
  const latencies: number[] = [];
  // Timed here, to the last response: autocannon's own duration only ends at its next 1-second sampling tick.
  const started = performance.now();
  let lastResponse = started;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({
      url: spec.url,
      connections: spec.connections,
      amount: spec.amount,
      timeout: 10,
      requests,
      // Every connection walks through all tenants, each from its own starting point, so that the tenants share the load
      // evenly at every moment instead of all connections hitting one tenant after the other in step.
      setupClient(client) {
        const k = clients++ % requests.length;
        client.setRequests([...requests.slice(k), ...requests.slice(0, k)]);
      },
    }, (err: unknown, res) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res)));
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
      latencies.push(responseTime);
      lastResponse = performance.now();
    });
  });
  latencies.sort((a, b) => a - b);
  return {
    seconds: (lastResponse - started) / 1000, responses: latencies.length, statusCodes, errors: result.errors, timeouts: result.timeouts,
    p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99),
  };
}

/** Creates `count` tenants with `credits` each, CREATE_CONCURRENCY at a time (not timed). */
async function createTenants(deps: Deps, run: string, label: string, count: number, credits: number): Promise<Tenant[]> {
  const names = Array.from({ length: count }, (_, i) => `${run}-${label}-${i + 1}`);
  const tenants = await mapWithConcurrency(names, CREATE_CONCURRENCY, async (name) => {
    const { org, apiKey } = await deps.orgs.create({ name, credits });
    if (org.status !== 'ACTIVE' || !apiKey || !org.dbName) throw new Error(`tenant ${name} ended ${org.status}${apiKey ? '' : ' without an API key'}`);
    return { id: org.id, apiKey, dbName: safe(org.dbName) };
  });
  if (tenants.length !== count) throw new Error(`created ${tenants.length} of ${count} tenants`);
  return tenants;
}

/** Message counts by status in a tenant's database. */
async function statusCounts(db: Sequelize, t: Tenant): Promise<Record<string, number>> {
  const rows = await db.query<{ status: string; n: number }>(`SELECT status, COUNT(*) AS n FROM \`${safe(t.dbName)}\`.messages GROUP BY status`, { type: QueryTypes.SELECT });
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

/** Throws unless the delivery queue has nothing left to do and nothing failed. */
async function expectQueueIdle(deps: Deps): Promise<void> {
  const counts = await deps.deliveryQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed', 'waiting-children');
  const left = Object.entries(counts).filter(([, v]) => v > 0);
  if (left.length) throw new Error(`delivery queue not idle: ${left.map(([k, v]) => `${k} ${v}`).join(', ')}`);
}

/** One scenario: `count` tenants, N × POST /messages with no worker, then the delivery worker until all are SENT. */
async function scenario(deps: Deps, config: Config, run: string, count: number, n: number, connections: number): Promise<Scenario> {
  const log = (line: string) => console.error(`[bench:messages] ${count} tenant(s): ${line}`);
  // Every tenant can pay for all N messages, so that no request is refused for credits however the load falls.
  const tenants = await createTenants(deps, run, `t${count}`, count, n);
  await expectQueueIdle(deps);
  checkInterrupted();

  const server = await startServer(deps, 0);
  let load: LoadResult;
  try {
    // Warm-up (not timed): one request per tenant resolves the org and the key and opens the tenant's pool.
    for (const t of tenants) {
      const res = await fetch(`${server.url}/messages?limit=1`, { headers: { 'X-Org-Id': String(t.id), Authorization: `Bearer ${t.apiKey}` } });
      if (res.status !== 200) throw new Error(`warm-up GET /messages for org ${t.id}: HTTP ${res.status} ${await res.text()}`);
    }
    load = await runLoad({ url: server.url, connections, amount: n, tenants: tenants.map(({ id, apiKey }) => ({ id, apiKey })) });
  } finally {
    await server.stop(1000);
  }
  const accepted = load.statusCodes['202'] ?? 0;
  const refused = Object.entries(load.statusCodes).filter(([code]) => code !== '202');
  log(`POST /messages: ${accepted} accepted in ${load.seconds.toFixed(2)} s (${(accepted / load.seconds).toFixed(0)}/s), p50 ${load.p50.toFixed(2)} ms, p99 ${load.p99.toFixed(2)} ms`);
  if (refused.length || load.errors || load.timeouts || accepted !== n) {
    throw new Error(`POST /messages: ${accepted} of ${n} accepted; other statuses ${JSON.stringify(Object.fromEntries(refused))}, `
      + `${load.errors} errors, ${load.timeouts} timeouts (${load.responses} responses)`);
  }
  // Every accepted message is one QUEUED row and one waiting job.
  let rows = 0;
  for (const t of tenants) {
    const c = await statusCounts(deps.sharedDb, t);
    const total = Object.values(c).reduce((s, v) => s + v, 0);
    if (total !== (c.QUEUED ?? 0)) throw new Error(`org ${t.id}: messages not all QUEUED before delivery: ${JSON.stringify(c)}`);
    rows += total;
  }
  const waiting = await deps.deliveryQueue.getWaitingCount();
  if (rows !== accepted || waiting !== accepted) throw new Error(`${accepted} accepted, but ${rows} rows and ${waiting} waiting jobs`);
  checkInterrupted();

  // The workers as `npm start` runs them: same process, same deps (pools), delivery concurrency WORKER_CONCURRENCY.
  const started = performance.now();
  const workers = startWorkers(config, deps);
  const watch = completions(workers.delivery.worker, accepted, (r) => r === 'SENT');
  let deliverSeconds: number;
  try {
    await watch.done;
    deliverSeconds = (performance.now() - started) / 1000; // up to the last completion, not including close()
  } finally {
    await workers.close();
  }
  log(`delivery: ${accepted} SENT in ${deliverSeconds.toFixed(2)} s (${(accepted / deliverSeconds).toFixed(0)}/s), ${watch.failedAttempts()} failed attempts`);

  // The invariants: every message SENT, each balance = credits − messages sent = its ledger sum.
  let sent = 0;
  for (const t of tenants) {
    const c = await statusCounts(deps.sharedDb, t);
    const total = Object.values(c).reduce((s, v) => s + v, 0);
    if ((c.SENT ?? 0) !== total) throw new Error(`org ${t.id}: not every message SENT: ${JSON.stringify(c)}`);
    sent += total;
    const balance = await deps.repo.balance(t.id);
    const [ledger] = await deps.sharedDb.query<{ total: string | number | null }>('SELECT SUM(amount) AS total FROM credit_ledger WHERE org_id = ?', {
      replacements: [t.id], type: QueryTypes.SELECT,
    });
    const ledgerSum = Number(ledger?.total ?? 0);
    if (balance !== n - total || ledgerSum !== balance) {
      throw new Error(`org ${t.id}: balance ${balance}, ledger sum ${ledgerSum}, expected ${n - total} (${n} granted, ${total} sent at 1 credit)`);
    }
  }
  if (sent !== accepted) throw new Error(`${accepted} accepted but ${sent} SENT`);
  await expectQueueIdle(deps);
  return { tenants: count, accepted, load, deliverSeconds, failedAttempts: watch.failedAttempts() };
}

/** Throws unless `name` is a plain name, safe to put in SQL. */
function safe(name: string): string {
  if (!SAFE_NAME.test(name)) throw new Error(`refusing unsafe name ${JSON.stringify(name)}`);
  return name;
}

/** `LIKE` pattern matching names that start with `prefix`. */
function startsWith(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
}

/** Drops every database and MySQL user of this run, over an admin connection of its own (works whatever state deps is in). */
async function cleanupDb(config: Config, run: string): Promise<{ databases: number; users: number }> {
  const admin = createSequelize({ ...config.db, database: undefined, poolMax: 1 });
  try {
    const dbs = await admin.query<Record<string, string>>('SHOW DATABASES LIKE :pattern', {
      replacements: { pattern: startsWith(`${run}_`) }, type: QueryTypes.SELECT,
    });
    for (const row of dbs) await admin.query(`DROP DATABASE IF EXISTS \`${safe(Object.values(row)[0]!)}\``);
    const users = await admin.query<{ User: string; Host: string }>('SELECT User, Host FROM mysql.user WHERE User LIKE :pattern', {
      replacements: { pattern: startsWith(config.tenant.dbPrefix) }, type: QueryTypes.SELECT,
    });
    for (const u of users) await admin.query(`DROP USER IF EXISTS ${admin.escape(safe(u.User))}@${admin.escape(u.Host)}`);
    return { databases: dbs.length, users: users.length };
  } finally {
    await admin.close();
  }
}

/** Deletes every Redis key of this run (`<run>:*`: both queues). */
async function cleanupRedis(config: Config, run: string): Promise<number> {
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    let deleted = 0;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${run}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) deleted += await redis.del(...keys);
    } while (cursor !== '0');
    return deleted;
  } finally {
    redis.disconnect();
  }
}

/** One line describing the machine, the database server and Redis. */
async function machine(db: Sequelize, config: Config): Promise<string> {
  const [row] = await db.query<{ version: string }>('SELECT VERSION() AS version', { type: QueryTypes.SELECT });
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  let redisVersion = 'unknown';
  try {
    redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? redisVersion;
  } finally {
    redis.disconnect();
  }
  const cpus = os.cpus();
  return `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, `
    + `${os.type()} ${os.release()} ${os.arch()}; Node ${process.version}; database server ${row?.version ?? 'unknown'}; Redis ${redisVersion}; `
    + 'database, Redis, API, worker and load generator all on this machine';
}

/** The command line of this run, as typed (with the benchmark's variables that were set). */
function commandLine(): string {
  const vars = ['BENCH_MESSAGES', ...Object.keys(TUNABLE_DEFAULTS)].filter((k) => process.env[k] !== undefined);
  const env = vars.map((k) => `${k}=${process.env[k]} `).join('');
  const args = process.argv.slice(2);
  if (process.env.npm_lifecycle_event === 'bench:messages') return `${env}npm run bench:messages${args.length ? ` -- ${args.join(' ')}` : ''}`;
  return `${env}node ${[...process.execArgv, path.relative(process.cwd(), process.argv[1]!), ...args].join(' ')}`;
}

/** "0.12×", with more digits for small ratios. */
function ratio(value: number, base: number): string {
  const r = value / base;
  return `${r.toFixed(r < 0.1 ? 3 : 2)}×`;
}

/** The Markdown table: the baseline row, then one row per scenario with its ratios to the baseline. */
function table(b: Baseline, scenarios: readonly Scenario[]): string {
  const addRate = b.n / b.addSeconds;
  const drainRate = b.n / b.drainSeconds;
  const ms = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  const lines = [
    '| scenario | messages | accepted/s | p50 (ms) | p99 (ms) | ÷ bare add | delivered/s | ÷ no-op worker |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| baseline: bare BullMQ \`add\` / no-op worker | ${b.n} | ${addRate.toFixed(0)} | ${ms(b.addP50)} | ${ms(b.addP99)} | 1.00× | ${drainRate.toFixed(0)} | 1.00× |`,
  ];
  for (const s of scenarios) {
    const accept = s.accepted / s.load.seconds;
    const deliver = s.accepted / s.deliverSeconds;
    lines.push(`| API + worker, ${s.tenants} tenant${s.tenants === 1 ? '' : 's'} | ${s.accepted} | ${accept.toFixed(0)} | ${ms(s.load.p50)} | ${ms(s.load.p99)} `
      + `| ${ratio(accept, addRate)} | ${deliver.toFixed(0)} | ${ratio(deliver, drainRate)} |`);
  }
  return lines.join('\n');
}

/** Replaces this benchmark's block in docs/benchmarks.md, creating the file or the section when missing. */
async function writeDoc(block: string): Promise<void> {
  const current = existsSync(DOC)
    ? await readFile(DOC, 'utf8')
    : '# Benchmarks\n\nMeasured against real MariaDB/MySQL and Redis servers by the scripts in `bench/`. '
      + 'Each script rewrites only the text between its own marker comments.\n';
  const start = current.indexOf(START);
  const end = current.indexOf(END);
  const next = start >= 0 && end > start
    ? current.slice(0, start) + block + current.slice(end + END.length)
    : `${current.trimEnd()}\n\n## Message throughput\n\n${block}\n`;
  await writeFile(DOC, next);
}

/** Runs the benchmark and cleans up after it, whatever happens. */
async function main(): Promise<void> {
  const n = messageCount();
  const run = `m${Date.now().toString(36)}`;
  const tunables = Object.fromEntries(Object.entries(TUNABLE_DEFAULTS).filter((e): e is [string, string] => e[1] !== undefined));
  const config = loadConfig({
    ...tunables,
    ...process.env,
    DB_NAME: `${run}_shared`, TENANT_DB_PREFIX: `${run}_t`, QUEUE_PREFIX: run, LOG_LEVEL: 'silent',
    GATEWAY: 'simulated', GATEWAY_LATENCY_MS: '0', GATEWAY_FAILURE_RATE: '0',
    // Throughput is measured here, not the per-org rate limit.
    RATE_LIMIT_POINTS: '1000000000', RATE_LIMIT_DURATION: '1',
  });
  const connections = positiveInt(process.env.BENCH_CONNECTIONS ?? TUNABLE_DEFAULTS.BENCH_CONNECTIONS!, 'BENCH_CONNECTIONS');
  if (n < connections) throw new Error(`N (${n}) must be at least BENCH_CONNECTIONS (${connections})`);
  if (config.tenant.cacheMax < Math.max(...TENANT_COUNTS)) throw new Error(`TENANT_CACHE_MAX must be at least ${Math.max(...TENANT_COUNTS)} (got ${config.tenant.cacheMax})`);
  const deps = createDeps(config);
  process.once('SIGINT', () => {
    interrupted = true;
    console.error('interrupted: stopping after the current step, then cleaning up');
  });
  const log = (line: string) => console.error(`[bench:messages] ${line}`);
  try {
    await prepareSharedDb(config, deps.sharedDb);
    await deps.servers.ensureDefault();
    if (!(await deps.events.ready())) throw new Error('could not subscribe to org events on Redis');

    const base = await baseline(config, n, connections);
    log(`baseline: ${n} adds in ${base.addSeconds.toFixed(2)} s (${(n / base.addSeconds).toFixed(0)}/s), `
      + `no-op worker drained them in ${base.drainSeconds.toFixed(2)} s (${(n / base.drainSeconds).toFixed(0)}/s)`);
    const scenarios: Scenario[] = [];
    for (const count of TENANT_COUNTS) {
      checkInterrupted();
      scenarios.push(await scenario(deps, config, run, count, n, connections));
    }

    const result = table(base, scenarios);
    console.log(result);
    const failed = scenarios.reduce((s, x) => s + x.failedAttempts, 0);
    const block = [
      START,
      `Measured ${new Date().toISOString().slice(0, 10)} with \`${commandLine()}\` (N = ${n} messages per scenario; the whole run took about `
        + `${Math.round(performance.now() / 1000)} s).`,
      '',
      `- Machine: ${await machine(deps.sharedDb, config)}.`,
      `- Settings: \`WORKER_CONCURRENCY=${config.delivery.concurrency}\`, \`TENANT_POOL_MAX=${config.tenant.poolMax}\` (connections per tenant pool), `
        + `\`TENANT_CACHE_MAX=${config.tenant.cacheMax}\`, \`DB_POOL_MAX=${config.db.poolMax}\` (shared DB), \`GATEWAY=simulated\`, \`GATEWAY_LATENCY_MS=0\`, `
        + `\`GATEWAY_FAILURE_RATE=0\`, \`LOG_LEVEL=silent\`, \`RATE_LIMIT_POINTS=1000000000\` (the rate limit is not what is measured); ${connections} HTTP connections.`,
      `- **baseline**: on the same Redis in the same run, a bare BullMQ \`Queue.add\` of N jobs \`{orgId, messageId}\` with a custom job id and the `
        + `delivery queue's job options, ${connections} adds in flight (as many as the HTTP connections below); *accepted/s* is adds/s and p50/p99 the `
        + `latency of one add. Then a no-op \`Worker\` (concurrency ${config.delivery.concurrency}) drains them; *delivered/s* is completed jobs/s, `
        + 'from starting the worker to its N-th `completed` event.',
      `- **API + worker**: tenants created with enough credits for all N messages, one warm-up \`GET /messages\` per tenant (not timed), then `
        + `autocannon (in a worker thread of its own) sends N \`POST /messages\` (sms, 1 credit) over ${connections} connections to the API `
        + '(`startServer`) with no worker running; with 50 tenants each connection walks through all tenants from its own starting point. '
        + '*accepted/s* is 202 answers ÷ the time from starting autocannon to the last answer, p50/p99 the latency of one request; any other answer fails the run. The API is stopped, '
        + '`startWorkers` starts on the same deps (as `npm start` runs them) and *delivered/s* is N ÷ the time from its start to its N-th '
        + '`completed` job. Checked afterwards: every message `SENT`, each balance = credits − messages = `SUM(amount)` of its ledger, queue idle'
        + `${failed ? ` (${failed} failed attempts were retried)` : ', no failed attempt'}.`,
      '- *÷ bare add*: accepted/s ÷ the baseline\'s adds/s; *÷ no-op worker*: delivered/s ÷ the baseline\'s completed/s (1.00× would be free).',
      '',
      result,
      END,
    ].join('\n');
    await writeDoc(block);
    log(`wrote ${path.relative(process.cwd(), DOC)}`);
  } finally {
    await deps.close().catch((err: unknown) => log(`closing deps failed: ${String(err)}`));
    const dropped = await cleanupDb(config, run);
    const keys = await cleanupRedis(config, run);
    log(`cleaned up ${dropped.databases} databases, ${dropped.users} users and ${keys} Redis keys of run ${run}`);
  }
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  loadThread(workerData as LoadSpec).then(
    (result) => parentPort!.postMessage({ result }),
    (err: unknown) => parentPort!.postMessage({ error: err instanceof Error ? err.stack ?? err.message : String(err) }),
  );
}
