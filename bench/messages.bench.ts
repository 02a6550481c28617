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
 * 3. The same on a local Redis Cluster (scripts/local-redis-cluster.ts: 3 masters + 3 replicas, REDIS_CLUSTER_NODES),
 *    in the same run: its own bare baseline, then 1 tenant through the API and the workers.
 *
 * Prints the table and rewrites its section of docs/benchmarks.md. Everything it creates (databases, MySQL users,
 * Redis keys under the run's prefix) is removed at the end.
 *
 *   npm run bench:messages [-- --n 15000]      (or BENCH_MESSAGES=15000; default 15000 messages per scenario)
 *
 * Tunables read from the environment (defaults in brackets): WORKER_CONCURRENCY [50], TENANT_CACHE_MAX [60],
 * TENANT_POOL_MAX [the app's default], DB_POOL_MAX [the app's default], BENCH_CONNECTIONS [50].
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type autocannon from 'autocannon';
import { Queue, Worker, type Job } from 'bullmq';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Config } from '../config/config.js';
import { createDeps, type Deps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import { createRedis } from '../src/platform/lib/redis.js';
import { startLocalRedisCluster } from '../scripts/local-redis-cluster.js';
import type { DeliveryJob } from '../src/platform/queue/queues.js';
import { startWorkers } from '../src/messages/entry-points/queue/workers.js';
import {
  closeAndCleanUp,
  commandLine,
  describeMachine,
  formatMs,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  quantile,
  runAutocannon,
  runBenchFile,
  runLoadThread,
  safeSqlName,
  stopOnCtrlC,
  throwIfInterrupted,
  tunable,
  withRedis,
  writeDocSection,
  type CannonResult,
} from './bench-lib.js';

const BASELINE_QUEUE = 'baseline';
const TENANT_COUNTS = [1, 50] as const;
const CREATE_CONCURRENCY = 4;
/** A delivery run fails when no job completes for this long (a stuck run, not a slow one). */
const STALL_MS = 30_000;
/** The request body: one sms segment, so one credit per message. */
const MESSAGE = { to: '+15551230000', channel: 'sms', body: 'benchmark message' } as const;
/** Tunables the caller may set in the environment, with the benchmark's defaults. */
const TUNABLE_DEFAULTS: Record<string, string | undefined> = {
  WORKER_CONCURRENCY: '50',
  TENANT_CACHE_MAX: '60',
  TENANT_POOL_MAX: undefined,
  DB_POOL_MAX: undefined,
  BENCH_CONNECTIONS: '50',
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
  load: CannonResult;
  deliverSeconds: number;
  failedAttempts: number;
}

/** N (messages per scenario, and jobs of the baseline) from --n, else BENCH_MESSAGES, else 15000. */
function messageCount(): number {
  const { values } = parseArgs({ options: { n: { type: 'string' } } });
  return positiveInt(values.n ?? process.env.BENCH_MESSAGES ?? '15000', 'N');
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
      stall = setTimeout(
        () => finish(new Error(`no job completed for ${STALL_MS / 1000} s: ${completed} of ${n} completed, ${failed} failed attempts`)),
        STALL_MS,
      );
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
  // Clients of either kind (one Redis, or a Cluster with REDIS_CLUSTER_NODES), as the app makes them.
  const connection = createRedis(config, 'blocking');
  const workerConnection = createRedis(config, 'blocking');
  // The job options of the delivery queue (src/platform/queue/queues.ts), so each add writes the same job shape.
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
    throwIfInterrupted();

    const drainStarted = performance.now();
    worker = new Worker<DeliveryJob, string>(BASELINE_QUEUE, async () => 'SENT', {
      connection: workerConnection,
      prefix: config.queuePrefix,
      concurrency: config.delivery.concurrency,
      maxStalledCount: 10,
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

/** The load-generator thread (see runLoadThread): autocannon over `POST /messages`, each connection starting at another tenant. */
function loadThread(spec: LoadSpec): Promise<CannonResult> {
  const body = JSON.stringify(MESSAGE);
  const requests: autocannon.Request[] = spec.tenants.map((t) => ({
    method: 'POST',
    path: '/messages',
    headers: { 'content-type': 'application/json', 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` },
    body,
  }));
  return runAutocannon({ url: spec.url, connections: spec.connections, amount: spec.amount, requests });
}

/** Creates `count` tenants with `credits` each, CREATE_CONCURRENCY at a time (not timed). */
async function createTenants(deps: Deps, run: string, label: string, count: number, credits: number): Promise<Tenant[]> {
  const names = Array.from({ length: count }, (_, i) => `${run}-${label}-${i + 1}`);
  const tenants = await mapWithConcurrency(names, CREATE_CONCURRENCY, async (name) => {
    const { org, apiKey } = await deps.orgs.create({ name, credits });
    if (org.status !== 'ACTIVE' || !apiKey || !org.dbName)
      throw new Error(`tenant ${name} ended ${org.status}${apiKey ? '' : ' without an API key'}`);
    return { id: org.id, apiKey, dbName: safeSqlName(org.dbName) };
  });
  if (tenants.length !== count) throw new Error(`created ${tenants.length} of ${count} tenants`);
  return tenants;
}

/** Message counts by status in a tenant's database. */
async function statusCounts(db: Sequelize, t: Tenant): Promise<Record<string, number>> {
  const rows = await db.query<{ status: string; n: number }>(
    `SELECT status, COUNT(*) AS n FROM \`${safeSqlName(t.dbName)}\`.messages GROUP BY status`,
    { type: QueryTypes.SELECT },
  );
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
  throwIfInterrupted();

  const server = await startServer(deps, 0);
  let load: CannonResult;
  try {
    // Warm-up (not timed): one request per tenant resolves the org and the key and opens the tenant's pool.
    for (const t of tenants) {
      const res = await fetch(`${server.url}/messages?limit=1`, {
        headers: { 'X-Org-Id': String(t.id), Authorization: `Bearer ${t.apiKey}` },
      });
      if (res.status !== 200) throw new Error(`warm-up GET /messages for org ${t.id}: HTTP ${res.status} ${await res.text()}`);
    }
    const spec: LoadSpec = { url: server.url, connections, amount: n, tenants: tenants.map(({ id, apiKey }) => ({ id, apiKey })) };
    load = await runLoadThread<LoadSpec, CannonResult>(import.meta.url, spec);
  } finally {
    await server.stop(1000);
  }
  const accepted = load.statusCodes['202'] ?? 0;
  const refused = Object.entries(load.statusCodes).filter(([code]) => code !== '202');
  log(
    `POST /messages: ${accepted} accepted in ${load.seconds.toFixed(2)} s (${(accepted / load.seconds).toFixed(0)}/s), p50 ${load.p50.toFixed(2)} ms, p99 ${load.p99.toFixed(2)} ms`,
  );
  if (refused.length || load.errors || load.timeouts || accepted !== n) {
    throw new Error(
      `POST /messages: ${accepted} of ${n} accepted; other statuses ${JSON.stringify(Object.fromEntries(refused))}, ` +
        `${load.errors} errors, ${load.timeouts} timeouts (${load.responses} responses)`,
    );
  }
  // Every accepted message is one QUEUED row and one waiting job.
  let rows = 0;
  for (const t of tenants) {
    const c = await statusCounts(deps.sharedDb, t);
    const total = Object.values(c).reduce((s, v) => s + v, 0);
    if (total !== (c.QUEUED ?? 0)) throw new Error(`org ${t.id}: messages not all QUEUED before delivery: ${JSON.stringify(c)}`);
    rows += total;
  }
  // Every job carries a fair-share priority, so BullMQ keeps them as `prioritized` rather than `waiting`.
  const counts = await deps.deliveryQueue.getJobCounts('waiting', 'prioritized');
  const waiting = (counts.waiting ?? 0) + (counts.prioritized ?? 0);
  if (rows !== accepted || waiting !== accepted) throw new Error(`${accepted} accepted, but ${rows} rows and ${waiting} waiting jobs`);
  throwIfInterrupted();

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
  log(
    `delivery: ${accepted} SENT in ${deliverSeconds.toFixed(2)} s (${(accepted / deliverSeconds).toFixed(0)}/s), ${watch.failedAttempts()} failed attempts`,
  );

  // The invariants: every message SENT, each balance = credits − messages sent = its ledger sum.
  let sent = 0;
  for (const t of tenants) {
    const c = await statusCounts(deps.sharedDb, t);
    const total = Object.values(c).reduce((s, v) => s + v, 0);
    if ((c.SENT ?? 0) !== total) throw new Error(`org ${t.id}: not every message SENT: ${JSON.stringify(c)}`);
    sent += total;
    const balance = await deps.repo.balance(t.id);
    const [ledger] = await deps.sharedDb.query<{ total: string | number | null }>(
      'SELECT SUM(amount) AS total FROM credit_ledger WHERE org_id = ?',
      {
        replacements: [t.id],
        type: QueryTypes.SELECT,
      },
    );
    const ledgerSum = Number(ledger?.total ?? 0);
    if (balance !== n - total || ledgerSum !== balance) {
      throw new Error(
        `org ${t.id}: balance ${balance}, ledger sum ${ledgerSum}, expected ${n - total} (${n} granted, ${total} sent at 1 credit)`,
      );
    }
  }
  if (sent !== accepted) throw new Error(`${accepted} accepted but ${sent} SENT`);
  await expectQueueIdle(deps);
  return { tenants: count, accepted, load, deliverSeconds, failedAttempts: watch.failedAttempts() };
}

/** "0.12×", with more digits for small ratios. */
function ratio(value: number, base: number): string {
  const r = value / base;
  return `${r.toFixed(r < 0.1 ? 3 : 2)}×`;
}

/** The Markdown table: the baseline row, then one row per scenario with its ratios to the baseline. */
function table(b: Baseline, scenarios: readonly Scenario[], where = ''): string {
  const addRate = b.n / b.addSeconds;
  const drainRate = b.n / b.drainSeconds;
  const rows = scenarios.map((s) => {
    const accept = s.accepted / s.load.seconds;
    const deliver = s.accepted / s.deliverSeconds;
    return [
      `API + worker, ${s.tenants} tenant${s.tenants === 1 ? '' : 's'}${where}`,
      s.accepted,
      accept.toFixed(0),
      formatMs(s.load.p50),
      formatMs(s.load.p99),
      ratio(accept, addRate),
      deliver.toFixed(0),
      ratio(deliver, drainRate),
    ];
  });
  return markdownTable(
    ['scenario', 'messages', 'accepted/s', 'p50 (ms)', 'p99 (ms)', '÷ bare add', 'delivered/s', '÷ no-op worker'],
    'lrrrrrrr',
    [
      [
        `baseline: bare BullMQ \`add\` / no-op worker${where}`,
        b.n,
        addRate.toFixed(0),
        formatMs(b.addP50),
        formatMs(b.addP99),
        '1.00×',
        drainRate.toFixed(0),
        '1.00×',
      ],
      ...rows,
    ],
  );
}

/** Runs the benchmark and cleans up after it, whatever happens. */
async function main(): Promise<void> {
  const n = messageCount();
  const run = `m${Date.now().toString(36)}`;
  const runOverrides = {
    GATEWAY: 'simulated',
    GATEWAY_LATENCY_MS: '0',
    GATEWAY_FAILURE_RATE: '0',
    // Throughput is measured here, not the per-org rate limit.
    RATE_LIMIT_POINTS: '1000000000',
    RATE_LIMIT_DURATION: '1',
  };
  const config = loadRunConfig(run, runOverrides, TUNABLE_DEFAULTS);
  const connections = positiveInt(tunable('BENCH_CONNECTIONS', TUNABLE_DEFAULTS), 'BENCH_CONNECTIONS');
  if (n < connections) throw new Error(`N (${n}) must be at least BENCH_CONNECTIONS (${connections})`);
  if (config.tenant.cacheMax < Math.max(...TENANT_COUNTS))
    throw new Error(`TENANT_CACHE_MAX must be at least ${Math.max(...TENANT_COUNTS)} (got ${config.tenant.cacheMax})`);
  const deps = createDeps(config);
  stopOnCtrlC();
  const log = (line: string) => console.error(`[bench:messages] ${line}`);
  try {
    await prepareRun(config, deps, true);

    const base = await baseline(config, n, connections);
    log(
      `baseline: ${n} adds in ${base.addSeconds.toFixed(2)} s (${(n / base.addSeconds).toFixed(0)}/s), ` +
        `no-op worker drained them in ${base.drainSeconds.toFixed(2)} s (${(n / base.drainSeconds).toFixed(0)}/s)`,
    );
    const scenarios: Scenario[] = [];
    for (const count of TENANT_COUNTS) {
      throwIfInterrupted();
      scenarios.push(await scenario(deps, config, run, count, n, connections));
    }

    // The same on a local Redis Cluster (3 masters, 3 replicas) in the same run: its own baseline, then 1 tenant.
    log('Redis Cluster: starting 3 masters + 3 replicas…');
    const cluster = await startLocalRedisCluster();
    const clusterRun = `${run}c`;
    const clusterConfig = loadRunConfig(clusterRun, { ...runOverrides, REDIS_CLUSTER_NODES: cluster.nodes.join(',') }, TUNABLE_DEFAULTS);
    const clusterDeps = createDeps(clusterConfig);
    let clusterBase: Baseline;
    let clusterScenario: Scenario;
    try {
      await prepareRun(clusterConfig, clusterDeps, true);
      clusterBase = await baseline(clusterConfig, n, connections);
      log(`cluster baseline: ${(n / clusterBase.addSeconds).toFixed(0)} adds/s, ${(n / clusterBase.drainSeconds).toFixed(0)} completed/s`);
      clusterScenario = await scenario(clusterDeps, clusterConfig, clusterRun, 1, n, connections);
    } finally {
      await closeAndCleanUp(clusterDeps, clusterConfig, clusterRun, log, false);
      await cluster.destroy();
    }

    const result = `${table(base, scenarios)}\n\nOn a Redis Cluster (3 masters + 3 replicas on this machine, \`REDIS_CLUSTER_NODES\`; every key in one slot), same run:\n\n${table(clusterBase, [clusterScenario], ' (Redis Cluster)')}\n\nCluster ÷ single Redis: accepted/s ${ratio(clusterScenario.accepted / clusterScenario.load.seconds, scenarios[0]!.accepted / scenarios[0]!.load.seconds)}, delivered/s ${ratio(clusterScenario.accepted / clusterScenario.deliverSeconds, scenarios[0]!.accepted / scenarios[0]!.deliverSeconds)} (1 tenant).`;
    console.log(result);
    const failed = scenarios.reduce((s, x) => s + x.failedAttempts, 0);
    const vars = ['BENCH_MESSAGES', ...Object.keys(TUNABLE_DEFAULTS)];
    const section = [
      `Measured ${new Date().toISOString().slice(0, 10)} with \`${commandLine('bench:messages', vars)}\` (N = ${n} messages per scenario; the whole run took about ` +
        `${Math.round(performance.now() / 1000)} s).`,
      '',
      `- Machine: ${await withRedis(config.redisUrl, (client) =>
        describeMachine(deps.sharedDb, {
          client,
          sharing: 'database, Redis, API, worker and load generator all on this machine',
        }),
      )}.`,
      `- Settings: \`WORKER_CONCURRENCY=${config.delivery.concurrency}\`, \`TENANT_POOL_MAX=${config.tenant.poolMax}\` (connections per tenant pool), ` +
        `\`TENANT_CACHE_MAX=${config.tenant.cacheMax}\`, \`DB_POOL_MAX=${config.db.poolMax}\` (shared DB), \`GATEWAY=simulated\`, \`GATEWAY_LATENCY_MS=0\`, ` +
        `\`GATEWAY_FAILURE_RATE=0\`, \`LOG_LEVEL=silent\`, \`RATE_LIMIT_POINTS=1000000000\` (the rate limit is not what is measured); ${connections} HTTP connections.`,
      `- **baseline**: on the same Redis in the same run, a bare BullMQ \`Queue.add\` of N jobs \`{orgId, messageId}\` with a custom job id and the ` +
        `delivery queue's job options, ${connections} adds in flight (as many as the HTTP connections below); *accepted/s* is adds/s and p50/p99 the ` +
        `latency of one add. Then a no-op \`Worker\` (concurrency ${config.delivery.concurrency}) drains them; *delivered/s* is completed jobs/s, ` +
        'from starting the worker to its N-th `completed` event.',
      `- **API + worker**: tenants created with enough credits for all N messages, one warm-up \`GET /messages\` per tenant (not timed), then ` +
        `autocannon (in a worker thread of its own) sends N \`POST /messages\` (sms, 1 credit) over ${connections} connections to the API ` +
        '(`startServer`) with no worker running; with 50 tenants each connection walks through all tenants from its own starting point. ' +
        '*accepted/s* is 202 answers ÷ the time from starting autocannon to the last answer, p50/p99 the latency of one request; any other answer fails the run. The API is stopped, ' +
        '`startWorkers` starts on the same deps (as `npm start` runs them) and *delivered/s* is N ÷ the time from its start to its N-th ' +
        '`completed` job. Checked afterwards: every message `SENT`, each balance = credits − messages = `SUM(amount)` of its ledger, queue idle' +
        `${failed ? ` (${failed} failed attempts were retried)` : ', no failed attempt'}.`,
      "- *÷ bare add*: accepted/s ÷ the baseline's adds/s; *÷ no-op worker*: delivered/s ÷ the baseline's completed/s (1.00× would be free).",
      '',
      result,
    ];
    log(`wrote ${await writeDocSection('messages', '## Message throughput', section)}`);
  } finally {
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main, loadThread);
