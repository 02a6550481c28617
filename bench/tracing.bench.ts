/**
 * What tracing costs `POST /messages`: requests/s of an API process (`src/main.ts --role api`) in three variants, side
 * by side in one run, against the real MariaDB/MySQL server and Redis of the config:
 *   1. no preload: started without `--import ./src/platform/telemetry/preload.ts`, so no tracing module is ever loaded;
 *   2. tracing off: the preload runs and decides, as `npm start` does with no OTEL_* variable set (the default);
 *   3. tracing on: OTEL_TRACES_EXPORTER=otlp (http/protobuf, the default protocol) to a local OTLP receiver in this
 *      process that counts and discards what it gets; every request then makes spans (HTTP, Koa, mysql2, ioredis,
 *      BullMQ's enqueue) and the batches are exported while the load runs.
 * The machine is shared (other processes come and go), so variants are measured in pairs **at the same time**: in each
 * round, variants 1 and 2 run side by side (two fresh processes, each with its own autocannon thread and the same
 * load), then 1 and 3 (the pairs' order alternates by round); whatever else runs weighs on both sides of a pair alike.
 * Each run: one request per tenant, a warm-up (not reported), then the measured run; the deliveries queue is emptied
 * between pairs (no workers run). Checked: every answer 202; the receiver got exports in the pairs with variant 3
 * only. Reported: each variant's mean req/s and the median (and range) of its per-round ratio to the variant 1 that
 * ran beside it.
 *
 * Prints the table and rewrites its section of docs/benchmarks.md. Everything it creates (databases, MySQL users,
 * Redis keys under the run's prefix) is removed at the end. Run it alone: `flock /tmp/bench.lock npm run bench:tracing`.
 *
 * Tunables (defaults in brackets): BENCH_ROUNDS [6], BENCH_SECONDS [8], BENCH_WARMUP_SECONDS [5], BENCH_CONNECTIONS [20].
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type autocannon from 'autocannon';
import { createDeps, type Deps } from '../src/deps.js';
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
  withRedis,
  writeDocSection,
  type CannonResult,
} from './bench-lib.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TENANTS = 10;
const TUNABLE_DEFAULTS: Record<string, string | undefined> = {
  BENCH_ROUNDS: '6',
  BENCH_SECONDS: '8',
  BENCH_WARMUP_SECONDS: '5',
  BENCH_CONNECTIONS: '20',
};

interface Variant {
  id: 1 | 2 | 3;
  name: string;
  preload: boolean;
  tracing: boolean;
}
const VARIANTS: readonly Variant[] = [
  { id: 1, name: 'no preload (tracing code never loaded)', preload: false, tracing: false },
  { id: 2, name: 'preload, tracing off (the default)', preload: true, tracing: false },
  { id: 3, name: 'tracing on (OTLP to a local receiver)', preload: true, tracing: true },
];
/** Each measured against variant 1 running at the same time. */
const PAIRS: readonly (readonly [Variant, Variant])[] = [
  [VARIANTS[0]!, VARIANTS[1]!],
  [VARIANTS[0]!, VARIANTS[2]!],
];

interface Tenant {
  id: number;
  apiKey: string;
}
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

/** One autocannon run of `seconds` over `POST /messages`, each connection starting at another tenant. */
function cannon(spec: LoadSpec, seconds: number): Promise<CannonResult> {
  const body = JSON.stringify({ to: '+15551230000', channel: 'sms', body: 'bench: tracing overhead' });
  const requests: autocannon.Request[] = spec.tenants.map((t) => ({
    method: 'POST',
    path: '/messages',
    headers: { 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}`, 'content-type': 'application/json' },
    body,
  }));
  return runAutocannon({ url: spec.url, connections: spec.connections, duration: seconds, requests });
}

/** The load-generator thread: a warm-up run (not reported), then the measured run. */
async function loadThread(spec: LoadSpec): Promise<LoadResult> {
  return { warmup: await cannon(spec, spec.warmupSeconds), measured: await cannon(spec, spec.seconds) };
}

/** A local OTLP receiver that counts requests and bytes and answers 200 (protobuf is not decoded). */
async function startSink(): Promise<{ url: string; requests: () => number; bytes: () => number; close(): Promise<void> }> {
  let requests = 0;
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => {
      requests++;
      res.writeHead(200, { 'Content-Type': 'application/x-protobuf' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    bytes: () => bytes,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Starts the API as a process of the variant; resolves with it and its URL once it listens. */
async function startApi(v: Variant, env: Record<string, string>, sinkUrl: string): Promise<{ child: ChildProcess; url: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_'))) as Record<string, string>;
  const otel = v.tracing ? { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl } : {};
  const args = [
    '--import',
    'tsx',
    ...(v.preload ? ['--import', './src/platform/telemetry/preload.ts'] : []),
    'src/main.ts',
    '--role',
    'api',
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...base, ...env, ...otel }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`API (variant ${v.id}) exited with ${code}: ${err.slice(-500)}`)));
  });
  return { child, url };
}

/** One POST /messages per tenant (pools, caches and prepared statements warm before the clock starts). */
async function warmUp(url: string, tenants: readonly Tenant[]): Promise<void> {
  for (const t of tenants) {
    const res = await fetch(`${url}/messages`, {
      method: 'POST',
      headers: { 'X-Org-Id': String(t.id), Authorization: `Bearer ${t.apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ to: '+15551230000', channel: 'sms', body: 'warm-up' }),
    });
    if (res.status !== 202) throw new Error(`warm-up POST /messages for org ${t.id}: HTTP ${res.status} ${await res.text()}`);
  }
}

/** SIGTERM (graceful: with tracing on, the last batch is exported) and wait for the exit. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

/** Throws unless every answer was a 202 and nothing failed. */
function expectAccepted(what: string, r: CannonResult): void {
  const other = Object.entries(r.statusCodes).filter(([code]) => code !== '202');
  if (other.length || r.errors || r.timeouts || !r.responses)
    throw new Error(
      `${what}: ${r.statusCodes['202'] ?? 0} answers 202; others ${JSON.stringify(Object.fromEntries(other))}, ${r.errors} errors`,
    );
}

interface Run {
  round: number;
  /** The pair it ran in: 2 (variants 1 and 2) or 3 (variants 1 and 3). */
  pair: 2 | 3;
  variant: Variant;
  rate: number;
  p50: number;
  p99: number;
  exports: number;
  exportedBytes: number;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const run = `tr${Date.now().toString(36)}`;
  const overrides = { RATE_LIMIT_POINTS: '1000000000', RATE_LIMIT_DURATION: '3600', LOG_LEVEL: 'warn' };
  const config = loadRunConfig(run, overrides);
  const rounds = positiveInt(tunable('BENCH_ROUNDS', TUNABLE_DEFAULTS), 'BENCH_ROUNDS');
  const seconds = positiveInt(tunable('BENCH_SECONDS', TUNABLE_DEFAULTS), 'BENCH_SECONDS');
  const warmupSeconds = positiveInt(tunable('BENCH_WARMUP_SECONDS', TUNABLE_DEFAULTS), 'BENCH_WARMUP_SECONDS');
  const connections = positiveInt(tunable('BENCH_CONNECTIONS', TUNABLE_DEFAULTS), 'BENCH_CONNECTIONS');
  const deps: Deps = createDeps(config);
  const sink = await startSink();
  stopOnCtrlC();
  const log = (line: string) => console.error(`[bench:tracing] ${line}`);
  const env = {
    DB_NAME: config.db.name,
    TENANT_DB_PREFIX: config.tenant.dbPrefix,
    QUEUE_PREFIX: config.queuePrefix,
    PORT: '0',
    ...overrides,
  };
  try {
    await prepareRun(config, deps, false);
    const names = Array.from({ length: TENANTS }, (_, i) => `${run}-${i + 1}`);
    const tenants = await mapWithConcurrency(names, 4, async (name) => {
      const { org, apiKey } = await deps.orgs.create({ name, credits: 1_000_000_000 });
      return { id: org.id, apiKey: apiKey! };
    });
    log(
      `${tenants.length} tenants; ${rounds} rounds × 2 side-by-side pairs of ${warmupSeconds} + ${seconds} s, ${connections} connections`,
    );

    const runs: Run[] = [];
    /** Starts both variants of a pair, warms them up, loads them at the same time, stops them; one Run each. */
    const runPair = async (round: number, pair: readonly [Variant, Variant]): Promise<Run[]> => {
      const requestsBefore = sink.requests();
      const bytesBefore = sink.bytes();
      const apis = await Promise.all(pair.map((v) => startApi(v, env, sink.url)));
      let loads: LoadResult[];
      try {
        for (const api of apis) await warmUp(api.url, tenants);
        // Side by side: both take their load at the same moment, so whatever else runs on the machine weighs on both.
        loads = await Promise.all(
          apis.map((api) =>
            runLoadThread<LoadSpec, LoadResult>(import.meta.url, { url: api.url, connections, warmupSeconds, seconds, tenants }),
          ),
        );
      } finally {
        await Promise.all(apis.map((api) => stop(api.child)));
      }
      const exports = sink.requests() - requestsBefore;
      const traced = pair.some((v) => v.tracing);
      if (traced ? exports === 0 : exports !== 0) throw new Error(`round ${round + 1}: the OTLP receiver got ${exports} exports`);
      return pair.map((v, k) => {
        expectAccepted(`variant ${v.id} warm-up`, loads[k]!.warmup);
        expectAccepted(`variant ${v.id}`, loads[k]!.measured);
        const m = loads[k]!.measured;
        const r: Run = {
          round,
          pair: pair[1].id as 2 | 3,
          variant: v,
          rate: (m.statusCodes['202'] ?? 0) / m.seconds,
          p50: m.p50,
          p99: m.p99,
          exports: v.tracing ? exports : 0,
          exportedBytes: v.tracing ? sink.bytes() - bytesBefore : 0,
        };
        log(
          `round ${round + 1}, ${v.id}. ${v.name} (beside ${pair[1 - k]!.id}): ${r.rate.toFixed(0)} req/s, p50 ${formatMs(r.p50)} ms, p99 ${formatMs(r.p99)} ms, ${r.exports} OTLP exports`,
        );
        return r;
      });
    };
    for (let round = 0; round < rounds; round++) {
      // Which pair goes first alternates, so that a drift over the run weighs on both alike.
      const pairs = round % 2 ? [PAIRS[1]!, PAIRS[0]!] : [PAIRS[0]!, PAIRS[1]!];
      for (const pair of pairs) {
        throwIfInterrupted();
        runs.push(...(await runPair(round, pair)));
        // No workers run: empty the queue so that Redis does not grow over the run.
        await deps.deliveryQueue.obliterate({ force: true });
      }
    }

    // Variant 1 runs in both pairs; a variant's ratio is to the variant 1 beside it, in the same round.
    const rows = VARIANTS.map((v) => {
      const mine = runs.filter((r) => r.variant.id === v.id);
      const ratios = mine.map((r) => r.rate / runs.find((b) => b.round === r.round && b.pair === r.pair && b.variant.id === 1)!.rate);
      return { v, mine, ratios };
    });
    const table = markdownTable(
      ['variant', 'req/s (mean)', 'p50 (ms)', 'p99 (ms)', '÷ no preload (median of rounds)', 'range of the rounds', 'OTLP exports'],
      'lrrrrrr',
      rows.map(({ v, mine, ratios }) => [
        `${v.id}. ${v.name}`,
        mean(mine.map((r) => r.rate)).toFixed(0),
        formatMs(mean(mine.map((r) => r.p50))),
        formatMs(mean(mine.map((r) => r.p99))),
        `${median(ratios).toFixed(3)}×`,
        `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`,
        mine.reduce((s, r) => s + r.exports, 0),
      ]),
    );
    console.log(table);
    const pct = (ratio: number) => `${ratio <= 1 ? '' : '−'}${(Math.abs(1 - ratio) * 100).toFixed(1)} %`;
    const [, off, on] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
    const sentence =
      `Tracing off costs ${pct(median(off.ratios))} of requests/s against no preload at all (median of ${rounds} side-by-side rounds, ` +
      `which range from ${pct(Math.max(...off.ratios))} to ${pct(Math.min(...off.ratios))}: the noise of this machine; the preload loads nothing ` +
      `and no tracing code runs per request); tracing on costs ${pct(median(on.ratios))} (rounds from ${pct(Math.max(...on.ratios))} to ` +
      `${pct(Math.min(...on.ratios))}).`;
    console.log(`\n${sentence}`);
    const machine = await withRedis(config.redisUrl, (client) =>
      describeMachine(deps.sharedDb, {
        client,
        sharing: 'database, Redis, the API process, the load generator and the OTLP receiver all on this machine',
      }),
    );
    const doc = await writeDocSection('tracing', '## Tracing overhead (POST /messages)', [
      `Measured ${new Date().toISOString().slice(0, 10)} with \`flock /tmp/bench.lock ${commandLine('bench:tracing', Object.keys(TUNABLE_DEFAULTS))}\` (the whole run took about ${Math.round(performance.now() / 1000)} s).`,
      '',
      `- Machine: ${machine}.`,
      `- **What runs**: an API process (\`src/main.ts --role api\`, under tsx, \`LOG_LEVEL=warn\`, no workers) per variant; autocannon in a worker thread sends \`POST /messages\` (an SMS of one segment: auth from the caches, the rate limiter's Redis round trip, the row inserted in the tenant database, the BullMQ job added) over ${connections} connections, each walking through ${TENANTS} tenants from its own starting point; one request per tenant, a ${warmupSeconds} s warm-up (not reported), then ${seconds} s measured. The queue is emptied between pairs.`,
      '- **Variants**: **1** no `--import ./src/platform/telemetry/preload.ts` (no tracing module loaded); **2** with the preload and no `OTEL_*` variable (the default: the preload decides and loads nothing more); **3** `OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT` = a receiver in the benchmark process (http/protobuf, batches at the SDK defaults), every request traced.',
      `- **Side by side**: the machine is shared (other processes come and go), so each variant is measured against variant 1 running **at the same time**: in each of ${rounds} rounds, variants 1 and 2 run as two fresh processes with one autocannon thread each and the same load, then 1 and 3 (the pairs' order alternates by round). A variant's ratio is its req/s ÷ the req/s of the variant 1 beside it, reported as the median of the rounds and their range; variant 1's own row is the mean of all its runs. *req/s* is 202 answers ÷ the time from starting autocannon to the last answer.`,
      `- **Checked**: every answer 202; the receiver got exports in the pairs with variant 3 only (${rows[2]!.mine.reduce((s, r) => s + r.exportedBytes, 0)} bytes in all).`,
      '',
      table,
      '',
      sentence,
    ]);
    log(`wrote ${doc}`);
  } finally {
    await sink.close();
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main, loadThread);
