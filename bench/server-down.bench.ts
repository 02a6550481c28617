/**
 * One MySQL server down must not slow the tenants of another (issue 10): the run's usual server (A) and a second
 * MariaDB (B, started by scripts/local-mariadb.ts), TENANTS_PER_SERVER tenants on each, GET /messages traffic on A's
 * tenants and on B's at once (half the connections each), in three phases of one run: both servers up, B killed
 * (SIGKILL: its tenants answer 503), both up again. Reported per phase: A's req/s, p50 and p99, and B's answers.
 *
 *   npm run bench:server-down
 *
 * Tunables (defaults in brackets): TENANTS_PER_SERVER [50], BENCH_CONNECTIONS [20], BENCH_SECONDS [6].
 * Everything it creates is removed at the end (the second server with its data directory too).
 */
import { randomBytes } from 'node:crypto';
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
    const phases = [await phase('both servers up')];
    await second.kill();
    phases.push(await phase('server B killed'));
    await second.start();
    await new Promise((r) => setTimeout(r, config.tenant.retryAfterMs)); // B's fail-fast window ends
    phases.push(await phase('server B back'));

    const statuses = (c: CannonResult) =>
      Object.entries(c.statusCodes)
        .map(([s, n]) => `${n} × ${s}`)
        .join(', ');
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${await describeMachine(root)}.`,
      `Command: \`${commandLine('bench:server-down', Object.keys(DEFAULTS))}\`.`,
      `${PER_SERVER} tenants on server A (the run's usual MariaDB) and ${PER_SERVER} on server B (a second \`mariadbd\`); ` +
        `${Math.floor(CONNECTIONS / 2)} connections on A's tenants and as many on B's, at once; ${SECONDS} s per phase after 1 s of warm-up; ` +
        `B killed with SIGKILL between phases 1 and 2, started again before phase 3. \`TENANT_RETRY_AFTER_MS=${config.tenant.retryAfterMs}\`.`,
      '',
      markdownTable(
        ['phase', "A's tenants: req/s", 'A: p50 (ms)', 'A: p99 (ms)', "A's req/s ÷ phase 1", "B's tenants were answered"],
        'lrrrrl',
        phases.map((p) => [
          p.name,
          (p.a.responses / p.a.seconds).toFixed(0),
          formatMs(p.a.p50),
          formatMs(p.a.p99),
          `${(p.a.responses / p.a.seconds / (phases[0]!.a.responses / phases[0]!.a.seconds)).toFixed(2)}×`,
          statuses(p.b),
        ]),
      ),
    ];
    console.log(lines.join('\n'));
    log(`wrote ${await writeDocSection('server-down', '## One tenant server down', lines)}`);
  } finally {
    await api?.stop(1000).catch(() => undefined);
    await root.close();
    // The second server's databases go with its data directory; the shared DB and server A's are dropped here.
    await closeAndCleanUp(deps, config, run, log, true);
    await second?.destroy();
  }
}

runBenchFile(main, loadThread);
