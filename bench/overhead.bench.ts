/**
 * Overhead of the per-org rate limiter and of the HTTP metrics on request throughput, against the real MariaDB/MySQL
 * server and Redis of the config, all in one run and on the same deps and tenants.
 *
 * Four variants of the API, each on a freshly started server (`startServer`) over a copy of the same deps:
 *   1. neither: `limits` replaced by a pass-through, `metrics.httpDuration` removed;
 *   2. rate limiter only;  3. metrics only;  4. both (the real configuration).
 * autocannon (in a worker thread) drives `GET /org` (auth + limiter + a fresh balance read) across the tenants, first
 * for a short warm-up, then for the measured seconds. The variants run in the order 1 2 3 4 4 3 2 1 and each is reported
 * as the mean of its two runs. Checked: every answer 200; the Redis counters of the limiter grew by this variant's
 * requests exactly when the limiter was on; the histogram grew by them exactly when the metrics were on; and a final
 * scrape of `/metrics` (admin token) shows the total of the metrics variants.
 *
 * Prints the table and rewrites its section of docs/benchmarks.md. Everything it creates (databases, MySQL users,
 * Redis keys under the run's prefix) is removed at the end.
 *
 *   npm run bench:overhead
 *
 * Tunables read from the environment (defaults in brackets): BENCH_CONNECTIONS [50], BENCH_SECONDS [8] (measured
 * seconds per run of a variant), BENCH_WARMUP_SECONDS [1], DB_POOL_MAX [the app's default].
 */
import { performance } from 'node:perf_hooks';
import type autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { createDeps, type Deps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import type { RateLimits } from '../src/platform/rate-limits/rate-limits.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import type { Metrics } from '../src/platform/metrics/metrics.js';
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
  type CannonResult,
} from './bench-lib.js';

const TENANTS = 10;
const CREATE_CONCURRENCY = 4;
const ROUTE = '/org';
/** Never reached in a run, so nothing is refused; a window long enough that the limiter's counters can be checked. */
const RATE_LIMIT_POINTS = 1_000_000_000;
const RATE_LIMIT_DURATION = 3600;
/** Interleaved, then reversed, so that a drift over the run weighs on every variant alike. */
const ORDER = [1, 2, 3, 4, 4, 3, 2, 1] as const;
/** Tunables the caller may set in the environment, with the benchmark's defaults. */
const TUNABLE_DEFAULTS: Record<string, string | undefined> = {
  BENCH_CONNECTIONS: '50',
  BENCH_SECONDS: '8',
  BENCH_WARMUP_SECONDS: '1',
  DB_POOL_MAX: undefined,
};

interface Variant {
  id: (typeof ORDER)[number];
  name: string;
  limiter: boolean;
  metrics: boolean;
}

const VARIANTS: readonly Variant[] = [
  { id: 1, name: 'neither', limiter: false, metrics: false },
  { id: 2, name: 'rate limiter only', limiter: true, metrics: false },
  { id: 3, name: 'metrics only', limiter: false, metrics: true },
  { id: 4, name: 'both (real configuration)', limiter: true, metrics: true },
];

/** The limiter's interface doing nothing: no Redis (the headers are still set from its constant answer). */
const PASS_THROUGH: RateLimits = {
  consumeOrg: async (orgId, override, cost) => PASS_THROUGH.spendOrg(orgId, override, cost)!,
  spendOrg: (_orgId, override, _cost) => ({ allowed: true, limit: override ?? { points: 1, duration: 1 }, remaining: 1, resetMs: 1000 }),
  checkAuthFailures: () => undefined,
  recordAuthFailure: async () => {},
};

interface Tenant {
  id: number;
  apiKey: string;
}

/** What the load-generator thread is asked to do. */
interface LoadSpec {
  url: string;
  connections: number;
  warmupSeconds: number;
  seconds: number;
  tenants: Tenant[];
}

interface LoadResult {
  warmup: CannonResult;
  measured: CannonResult;
}

/** One run of one variant, with what the server counted meanwhile. */
interface Run {
  variant: Variant;
  load: LoadResult;
  /** Requests sent to the server in this run: warm-up fetches, warm-up and measured autocannon answers. */
  sent: number;
  limiterDelta: number;
  histogramDelta: number;
}

/** One autocannon run of `seconds` over `GET /org`, each connection starting at another tenant. */
function cannon(spec: LoadSpec, seconds: number): Promise<CannonResult> {
  const requests: autocannon.Request[] = spec.tenants.map((t) => ({
    method: 'GET',
    path: ROUTE,
    headers: { 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` },
  }));
  return runAutocannon({ url: spec.url, connections: spec.connections, duration: seconds, requests });
}

/** The load-generator thread (see runLoadThread): a warm-up run (not reported), then the measured run. */
async function loadThread(spec: LoadSpec): Promise<LoadResult> {
  const warmup = await cannon(spec, spec.warmupSeconds);
  const measured = await cannon(spec, spec.seconds);
  return { warmup, measured };
}

/** Throws unless every answer of an autocannon run was a 200 and nothing failed. */
function expectAllOk(what: string, r: CannonResult): void {
  const other = Object.entries(r.statusCodes).filter(([code]) => code !== '200');
  if (other.length || r.errors || r.timeouts || !r.responses) {
    throw new Error(
      `${what}: ${r.statusCodes['200'] ?? 0} answers 200; other statuses ${JSON.stringify(Object.fromEntries(other))}, ` +
        `${r.errors} errors, ${r.timeouts} timeouts`,
    );
  }
}

/** Creates the tenants, CREATE_CONCURRENCY at a time (not timed). */
async function createTenants(deps: Deps, run: string): Promise<Tenant[]> {
  const names = Array.from({ length: TENANTS }, (_, i) => `${run}-${i + 1}`);
  const tenants = await mapWithConcurrency(names, CREATE_CONCURRENCY, async (name) => {
    const { org, apiKey } = await deps.orgs.create({ name, credits: 1 });
    if (org.status !== 'ACTIVE' || !apiKey) throw new Error(`tenant ${name} ended ${org.status}${apiKey ? '' : ' without an API key'}`);
    return { id: org.id, apiKey };
  });
  if (tenants.length !== TENANTS) throw new Error(`created ${tenants.length} of ${TENANTS} tenants`);
  return tenants;
}

/** The deps a variant's server is started with: the same clients, with the limiter and/or the histogram taken out. */
function variantDeps(deps: Deps, v: Variant): Deps {
  // Only the histogram is taken out (errorsAndAccessLog skips it when undefined); /metrics still serves the registry.
  const metrics = v.metrics ? deps.metrics : ({ ...deps.metrics, httpDuration: undefined } as unknown as Metrics);
  return { ...deps, limits: v.limiter ? deps.limits : PASS_THROUGH, metrics };
}

/** Points consumed so far on the limiter's Redis counters of this run (all orgs). */
async function limiterPoints(redis: Redis, run: string): Promise<number> {
  let total = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${run}:rl:org:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) for (const v of await redis.mget(...keys)) total += Number(v ?? 0);
  } while (cursor !== '0');
  return total;
}

/** Requests the histogram has timed so far for `GET /org` answered 200, read in process. */
async function histogramCount(metrics: Metrics): Promise<number> {
  const { values } = await metrics.httpDuration.get();
  return values
    .filter(
      (v) =>
        v.metricName === 'http_request_duration_seconds_count' &&
        v.labels.method === 'GET' &&
        v.labels.route === ROUTE &&
        String(v.labels.status) === '200',
    )
    .reduce((s, v) => s + v.value, 0);
}

/** One run of one variant: fresh server, warm-up fetch per tenant, autocannon; checks what the server counted. */
async function runVariant(
  deps: Deps,
  redis: Redis,
  run: string,
  v: Variant,
  tenants: readonly Tenant[],
  spec: Omit<LoadSpec, 'url' | 'tenants'>,
): Promise<Run> {
  const pointsBefore = await limiterPoints(redis, run);
  const countBefore = await histogramCount(deps.metrics);
  const server = await startServer(variantDeps(deps, v), 0);
  let load: LoadResult;
  try {
    // Warm-up (not timed): one request per tenant; the limiter's headers tell whether it ran.
    for (const t of tenants) {
      const res = await fetch(`${server.url}${ROUTE}`, { headers: { 'X-Org-Id': String(t.id), Authorization: `Bearer ${t.apiKey}` } });
      if (res.status !== 200) throw new Error(`warm-up GET ${ROUTE} for org ${t.id}: HTTP ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
      const limit = res.headers.get('ratelimit-limit');
      if (v.limiter ? limit !== String(RATE_LIMIT_POINTS) : limit !== null)
        throw new Error(`variant ${v.id} (${v.name}): RateLimit-Limit header ${JSON.stringify(limit)}`);
    }
    load = await runLoadThread<LoadSpec, LoadResult>(import.meta.url, { ...spec, url: server.url, tenants: [...tenants] });
  } finally {
    await server.stop(1000);
  }
  expectAllOk(`variant ${v.id} warm-up`, load.warmup);
  expectAllOk(`variant ${v.id}`, load.measured);
  const sent = tenants.length + load.warmup.responses + load.measured.responses;
  const limiterDelta = (await limiterPoints(redis, run)) - pointsBefore;
  const histogramDelta = (await histogramCount(deps.metrics)) - countBefore;
  // The server may have answered requests whose answers autocannon no longer read when it stopped (at most one
  // in flight per connection, at the end of the warm-up and of the measured run).
  const slack = 2 * spec.connections;
  const expect = (on: boolean, delta: number, what: string) => {
    if (on ? delta < sent || delta > sent + slack : delta !== 0) {
      throw new Error(
        `variant ${v.id} (${v.name}): ${what} grew by ${delta} for ${sent} requests seen (expected ${on ? `${sent}..${sent + slack}` : 0})`,
      );
    }
  };
  expect(v.limiter, limiterDelta, "the limiter's Redis counters");
  expect(v.metrics, histogramDelta, `the histogram's count for GET ${ROUTE}`);
  return { variant: v, load, sent, limiterDelta, histogramDelta };
}

/** Scrapes /metrics once, through the API with the admin token (real deps), and returns the `GET /org` 200 count. */
async function scrapeCount(deps: Deps): Promise<number> {
  const server = await startServer(deps, 0);
  try {
    const res = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${deps.config.adminToken}` } });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`GET /metrics: HTTP ${res.status} ${text.slice(0, 200)}`);
    let count = 0;
    for (const line of text.split('\n')) {
      const m = /^http_request_duration_seconds_count\{([^}]*)\} (\S+)$/.exec(line);
      if (!m) continue;
      const labels = m[1]!;
      if (labels.includes('method="GET"') && labels.includes(`route="${ROUTE}"`) && labels.includes('status="200"')) count += Number(m[2]);
    }
    return count;
  } finally {
    await server.stop(1000);
  }
}

interface Summary {
  variant: Variant;
  rates: number[];
  rate: number;
  p50: number;
  p99: number;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/** Per variant: requests/s of each run (200 answers ÷ seconds to the last answer), their mean, and mean p50/p99. */
function summarize(runs: readonly Run[]): Summary[] {
  return VARIANTS.map((variant) => {
    const mine = runs.filter((r) => r.variant.id === variant.id).map((r) => r.load.measured);
    const rates = mine.map((m) => (m.statusCodes['200'] ?? 0) / m.seconds);
    return { variant, rates, rate: mean(rates), p50: mean(mine.map((m) => m.p50)), p99: mean(mine.map((m) => m.p99)) };
  });
}

/** The Markdown table, with each variant's ratio to variant 1. */
function table(rows: readonly Summary[]): string {
  const base = rows[0]!.rate;
  const head = [
    'variant',
    'rate limiter',
    'metrics',
    'req/s (1st run)',
    'req/s (2nd run)',
    'req/s (mean)',
    'p50 (ms)',
    'p99 (ms)',
    '÷ neither',
  ];
  return markdownTable(
    head,
    'lccrrrrrr',
    rows.map(({ variant: v, ...s }) => [
      `${v.id}. ${v.name}`,
      v.limiter ? 'on' : 'off',
      v.metrics ? 'on' : 'off',
      ...s.rates.map((r) => r.toFixed(0)),
      s.rate.toFixed(0),
      formatMs(s.p50),
      formatMs(s.p99),
      `${(s.rate / base).toFixed(2)}×`,
    ]),
  );
}

/** One sentence reading the result: each component's effect on requests/s against the run-to-run spread. */
function reading(rows: readonly Summary[]): string {
  const base = rows[0]!.rate;
  const spread = Math.max(...rows.map((s) => (Math.abs(s.rates[0]! - s.rates[1]!) / s.rate) * 100));
  const change = (s: Summary) => {
    const pct = (s.rate / base - 1) * 100;
    return `${pct < 0 ? '−' : '+'}${Math.abs(pct).toFixed(1)} %${Math.abs(pct) <= spread ? ' (within the noise)' : ''}`;
  };
  const [, limiter, metrics, both] = rows as [Summary, Summary, Summary, Summary];
  return (
    `Against neither, the rate limiter (one Redis \`consume\` per request; the auth-failure counter is read only for addresses that failed recently) changes requests/s ` +
    `by ${change(limiter)}, the metrics histogram by ${change(metrics)}, and both together (the real configuration) by ${change(both)}, ` +
    `where the two runs of one variant differ by up to ${spread.toFixed(1)} %.`
  );
}

/** Runs the benchmark and cleans up after it, whatever happens. */
async function main(): Promise<void> {
  const run = `o${Date.now().toString(36)}`;
  const config = loadRunConfig(
    run,
    { RATE_LIMIT_POINTS: String(RATE_LIMIT_POINTS), RATE_LIMIT_DURATION: String(RATE_LIMIT_DURATION) },
    TUNABLE_DEFAULTS,
  );
  const connections = positiveInt(tunable('BENCH_CONNECTIONS', TUNABLE_DEFAULTS), 'BENCH_CONNECTIONS');
  const seconds = positiveInt(tunable('BENCH_SECONDS', TUNABLE_DEFAULTS), 'BENCH_SECONDS');
  const warmupSeconds = positiveInt(tunable('BENCH_WARMUP_SECONDS', TUNABLE_DEFAULTS), 'BENCH_WARMUP_SECONDS');
  const deps = createDeps(config);
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  stopOnCtrlC();
  const log = (line: string) => console.error(`[bench:overhead] ${line}`);
  try {
    await prepareRun(config, deps, true);
    const tenants = await createTenants(deps, run);
    log(`${tenants.length} tenants created; ${ORDER.length} runs of ${warmupSeconds} + ${seconds} s, order ${ORDER.join(' ')}`);

    const runs: Run[] = [];
    for (const id of ORDER) {
      throwIfInterrupted();
      const v = VARIANTS.find((x) => x.id === id)!;
      const r = await runVariant(deps, redis, run, v, tenants, { connections, warmupSeconds, seconds });
      const m = r.load.measured;
      log(
        `${v.id}. ${v.name}: ${((m.statusCodes['200'] ?? 0) / m.seconds).toFixed(0)} req/s, p50 ${formatMs(m.p50)} ms, p99 ${formatMs(m.p99)} ms ` +
          `(limiter counted ${r.limiterDelta}, histogram ${r.histogramDelta}, for ${r.sent} requests)`,
      );
      runs.push(r);
    }

    // The one scrape: the histogram's total for GET /org must be what the metrics variants added, and nothing else.
    const scraped = await scrapeCount(deps);
    const expected = runs.reduce((s, r) => s + r.histogramDelta, 0);
    const metricsSent = runs.filter((r) => r.variant.metrics).reduce((s, r) => s + r.sent, 0);
    const otherSent = runs.filter((r) => !r.variant.metrics).reduce((s, r) => s + r.sent, 0);
    if (scraped !== expected || scraped < metricsSent) {
      throw new Error(
        `/metrics shows ${scraped} timed GET ${ROUTE} requests; expected ${expected} (${metricsSent} sent in the metrics variants)`,
      );
    }
    log(
      `/metrics: ${scraped} GET ${ROUTE} requests timed (${metricsSent} sent in the variants with metrics, ${otherSent} in those without)`,
    );

    const rows = summarize(runs);
    const result = table(rows);
    console.log(result);
    const sentence = reading(rows);
    console.log(`\n${sentence}`);
    const section = [
      `Measured ${new Date().toISOString().slice(0, 10)} with \`${commandLine('bench:overhead', Object.keys(TUNABLE_DEFAULTS))}\` (the whole run took about ${Math.round(performance.now() / 1000)} s).`,
      '',
      `- Machine: ${await describeMachine(deps.sharedDb, { client: redis, sharing: 'database, Redis, API and load generator all on this machine' })}.`,
      `- Settings: \`RATE_LIMIT_POINTS=${RATE_LIMIT_POINTS}\`, \`RATE_LIMIT_DURATION=${RATE_LIMIT_DURATION}\` (nothing is refused, but every request ` +
        `still makes the limiter's Redis round trips; the long window keeps its counters checkable), \`DB_POOL_MAX=${config.db.poolMax}\` (shared DB), ` +
        `\`ORG_CACHE_TTL_MS=${config.orgCacheTtlMs}\`, \`LOG_LEVEL=silent\`; ${TENANTS} tenants; ${connections} HTTP connections.`,
      `- **What runs**: \`GET ${ROUTE}\` (org and API key from the org cache, the limiter, then a fresh balance read from the shared database), sent ` +
        `by autocannon in a worker thread of its own, each connection walking through the ${TENANTS} tenants from its own starting point. ` +
        `Each run starts a fresh server (\`startServer\`) over a copy of the same deps, sends one \`GET ${ROUTE}\` per tenant, a ${warmupSeconds} s ` +
        `autocannon warm-up (not reported), then ${seconds} s measured. Variants: **1** \`limits\` replaced by a pass-through (no Redis; ` +
        'the `RateLimit-*` headers are still set from its constant answer) and `metrics.httpDuration` removed (the first middleware then times nothing); **2** the real limiter only; ' +
        '**3** the real histogram only; **4** both, as the app runs. All four share the database, Redis, tenants and caches.',
      `- **Order**: ${ORDER.join(', ')}: each variant runs twice, once in each half, and is reported as the mean of its two runs (req/s, p50 and p99 ` +
        "each averaged); *req/s* is 200 answers ÷ the time from starting autocannon to the last answer; *÷ neither* is mean req/s ÷ variant 1's.",
      `- **Checked**: every answer 200; after each run the limiter's Redis counters grew by the run's requests when the limiter was on and not at all ` +
        "otherwise, and so did the histogram's count for `GET /org`; a final scrape of `/metrics` (admin token) shows " +
        `${scraped} timed \`GET ${ROUTE}\` requests, the sum of the runs with metrics (${metricsSent} requests seen by the client; the ` +
        `${otherSent} of the runs without are absent).`,
      '',
      result,
      '',
      sentence,
    ];
    log(`wrote ${await writeDocSection('overhead', '## Rate limiter and metrics overhead', section)}`);
  } finally {
    redis.disconnect();
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main, loadThread);
