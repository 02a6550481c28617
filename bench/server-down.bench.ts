/**
 * One MySQL server down or hung must not slow the tenants of another (issue 10, issue 18 item 10): the run's usual
 * server (A) and a second MariaDB (B, started by scripts/local-mariadb.ts), TENANTS_PER_SERVER tenants on each,
 * GET /messages traffic on A's tenants and on B's at once (half the connections each), in phases of one run: both
 * servers up, B killed (SIGKILL: its tenants answer 503), both up again, B frozen (SIGSTOP: TCP accepted, nothing
 * answered; its tenants must get 503 within milliseconds once the first wait on it has run out), B thawed. Reported
 * per phase: A's req/s, p50 and p99, B's p50, p99 and answers; for the freeze, the first request's latency, the
 * following ones', and how long after SIGCONT B's tenants are served again.
 *
 *   npm run bench:server-down
 *
 * Tunables (defaults in brackets): TENANTS_PER_SERVER [50], BENCH_CONNECTIONS [20], BENCH_SECONDS [6].
 * Everything it creates is removed at the end (the second server with its data directory too).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type autocannon from 'autocannon';
import { createDeps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import { startLocalMariaDb, type LocalMariaDb } from '../scripts/local-mariadb.js';
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
  tunable,
  writeDocSection,
  type CannonResult,
} from './bench-lib.js';

const DEFAULTS = { TENANTS_PER_SERVER: '50', BENCH_CONNECTIONS: '20', BENCH_SECONDS: '6' } as const;
const PER_SERVER = positiveInt(tunable('TENANTS_PER_SERVER', DEFAULTS), 'TENANTS_PER_SERVER');
const CONNECTIONS = positiveInt(tunable('BENCH_CONNECTIONS', DEFAULTS), 'BENCH_CONNECTIONS');
const SECONDS = positiveInt(tunable('BENCH_SECONDS', DEFAULTS), 'BENCH_SECONDS');

interface Tenant {
  id: number;
  apiKey: string;
}
interface LoadSpec {
  url: string;
  a: Tenant[];
  b: Tenant[];
  seconds: number;
}

const requestsOf = (tenants: Tenant[]): autocannon.Request[] =>
  tenants.map((t) => ({ method: 'GET', path: '/messages', headers: { 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` } }));

/** The load thread: A's and B's tenants at once, on half the connections each. */
async function loadThread(spec: LoadSpec): Promise<{ a: CannonResult; b: CannonResult }> {
  const half = Math.max(1, Math.floor(CONNECTIONS / 2));
  const [a, b] = await Promise.all([
    runAutocannon({ url: spec.url, connections: half, duration: spec.seconds, requests: requestsOf(spec.a) }),
    runAutocannon({ url: spec.url, connections: half, duration: spec.seconds, requests: requestsOf(spec.b) }),
  ]);
  return { a, b };
}

async function main(): Promise<void> {
  stopOnCtrlC();
  const run = `sd${randomBytes(3).toString('hex')}`;
  const config = loadRunConfig(run, { RATE_LIMIT_POINTS: '100000000', AUTH_FAILURE_LIMIT: '100000000' });
  const deps = createDeps(config, { role: 'api' });
  const log = (line: string) => console.error(line);
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 1 });
  let second: LocalMariaDb | undefined;
  let api: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await prepareRun(config, deps, true);
    second = await startLocalMariaDb();
    const b = await deps.servers.add({ name: `${run}-b`, host: second.host, port: second.port, user: 'root', password: '' });
    const make = (server: string) =>
      mapWithConcurrency(
        Array.from({ length: PER_SERVER }, (_, i) => `${run}-${server}-${i}`),
        4,
        async (name) => {
          const { org, apiKey } = await deps.orgs.create({ name, credits: 10, server });
          return { id: org.id, apiKey: apiKey! };
        },
      );
    log(`creating ${PER_SERVER} tenants on each server…`);
    const tenants = { a: await make('default'), b: await make(b.name) };
    api = await startServer(deps, 0);
    const url = api.url;
    const phase = async (name: string) => {
      await runLoadThread<LoadSpec, { a: CannonResult; b: CannonResult }>(import.meta.url, { url, ...tenants, seconds: 1 });
      const r = await runLoadThread<LoadSpec, { a: CannonResult; b: CannonResult }>(import.meta.url, { url, ...tenants, seconds: SECONDS });
      if ((r.a.statusCodes[200] ?? 0) !== r.a.responses) throw new Error(`${name}: A's tenants got ${JSON.stringify(r.a.statusCodes)}`);
      log(
        `${name}: A ${(r.a.responses / r.a.seconds).toFixed(0)} req/s, p99 ${formatMs(r.a.p99)} ms; B ${JSON.stringify(r.b.statusCodes)}`,
      );
      return { name, ...r };
    };
    /** One GET /messages of a tenant, timed (ms) with its status. */
    const timed = async (t: Tenant) => {
      const started = performance.now();
      const res = await fetch(`${url}/messages`, { headers: { 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` } });
      await res.arrayBuffer();
      return { ms: performance.now() - started, status: res.status, retryAfter: res.headers.get('retry-after') };
    };
    /** Waits until B's first tenant is served again (a probe found B); answers how long that took (ms). */
    const untilBServed = async () => {
      const started = performance.now();
      while ((await timed(tenants.b[0]!)).status !== 200) {
        if (performance.now() - started > 30_000) throw new Error('server B not served 30 s after it came back');
        await new Promise((r) => setTimeout(r, 20));
      }
      return performance.now() - started;
    };
    const loadBefore = os.loadavg()[0]!;
    const phases = [await phase('both servers up')];
    await second.kill();
    phases.push(await phase('server B killed'));
    await second.start();
    await untilBServed();
    phases.push(await phase('server B back'));
    await timed(tenants.b[0]!); // its session idle in the pool: the frozen server's first request sends a statement
    second.freeze();
    let frozen: { first: Awaited<ReturnType<typeof timed>>; next: number[]; nextStatuses: Set<number>; recoveredMs: number };
    try {
      const first = await timed(tenants.b[0]!);
      const next: number[] = [];
      const nextStatuses = new Set<number>();
      for (let i = 0; i < 100; i++) {
        const r = await timed(tenants.b[i % tenants.b.length]!);
        next.push(r.ms);
        nextStatuses.add(r.status);
      }
      log(`B frozen: first request ${first.status} in ${formatMs(first.ms)} ms; next 100: ${[...nextStatuses].join(', ')}`);
      phases.push(await phase('server B frozen'));
      second.thaw();
      frozen = { first, next: next.sort((x, y) => x - y), nextStatuses, recoveredMs: await untilBServed() };
    } finally {
      second.thaw();
    }
    phases.push(await phase('server B thawed'));

    const pct = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    const statuses = (c: CannonResult) =>
      Object.entries(c.statusCodes)
        .map(([s, n]) => `${n} × ${s}`)
        .join(', ');
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${await describeMachine(root)}.`,
      `Command: \`${commandLine('bench:server-down', Object.keys(DEFAULTS))}\`. ` +
        `Load average (1 min) of the machine: ${loadBefore.toFixed(1)} before phase 1, ${os.loadavg()[0]!.toFixed(1)} at the end ` +
        `(other work shares its ${os.cpus().length} cores: compare phases of this run only).`,
      `${PER_SERVER} tenants on server A (the run's usual MariaDB) and ${PER_SERVER} on server B (a second \`mariadbd\`); ` +
        `${Math.floor(CONNECTIONS / 2)} connections on A's tenants and as many on B's, at once; ${SECONDS} s per phase after 1 s of warm-up; ` +
        `B killed with SIGKILL between phases 1 and 2, started again before phase 3 (once a probe found it); ` +
        `B frozen with SIGSTOP before phase 4, thawed (SIGCONT) before phase 5. ` +
        `\`TENANT_RETRY_AFTER_MS=${config.tenant.retryAfterMs}\`, \`TENANT_PROBE_AFTER_MS=${config.tenant.probeAfterMs}\`, ` +
        `\`TENANT_CONNECT_TIMEOUT_MS=${config.tenant.connectTimeoutMs}\`, \`TENANT_STATEMENT_TIMEOUT_MS=${config.tenantStatementTimeoutMs}\`.`,
      '',
      markdownTable(
        [
          'phase',
          "A's tenants: req/s",
          'A: p50 (ms)',
          'A: p99 (ms)',
          "A's req/s ÷ phase 1",
          "A's p99 ÷ phase 1",
          'B: p50 (ms)',
          'B: p99 (ms)',
          "B's tenants were answered",
        ],
        'lrrrrrrrl',
        phases.map((p) => [
          p.name,
          (p.a.responses / p.a.seconds).toFixed(0),
          formatMs(p.a.p50),
          formatMs(p.a.p99),
          `${(p.a.responses / p.a.seconds / (phases[0]!.a.responses / phases[0]!.a.seconds)).toFixed(2)}×`,
          `${(p.a.p99 / phases[0]!.a.p99).toFixed(2)}×`,
          formatMs(p.b.p50),
          formatMs(p.b.p99),
          statuses(p.b),
        ]),
      ),
      '',
      `B frozen (SIGSTOP), one request at a time on B's tenants before phase 4: the first (a statement on an idle session of ` +
        `its tenant) answered ${frozen.first.status} (\`Retry-After: ${frozen.first.retryAfter}\`) after ${formatMs(frozen.first.ms)} ms ` +
        `(about \`TENANT_PROBE_AFTER_MS\` + \`TENANT_CONNECT_TIMEOUT_MS\`: the statement unanswered, then the probe unanswered); ` +
        `the next 100 answered ${[...frozen.nextStatuses].join(', ')} in p50 ${formatMs(pct(frozen.next, 0.5))} ms, ` +
        `p99 ${formatMs(pct(frozen.next, 0.99))} ms, max ${formatMs(frozen.next.at(-1)!)} ms (from memory). ` +
        `After SIGCONT, B's tenants were served again within ${formatMs(frozen.recoveredMs)} ms (the next probe).`,
    ];
    console.log(lines.join('\n'));
    log(`wrote ${await writeDocSection('server-down', '## One tenant server down or hung', lines)}`);
  } finally {
    await api?.stop(1000).catch(() => undefined);
    await root.close();
    // The second server's databases go with its data directory; the shared DB and server A's are dropped here.
    await closeAndCleanUp(deps, config, run, log, true);
    await second?.destroy();
  }
}

runBenchFile(main, loadThread);
