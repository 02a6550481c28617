/**
 * What the warm pool buys a signup: the latency of `POST /orgs` over HTTP (an API on an ephemeral port, `startServer`)
 * in a fleet of FLEET tenants, one mode after the other in one run (the load in a thread of its own):
 *   1. pool warm: TENANT_WARM_POOL_SIZE = N (the pool filled first, untimed), N warm-up creates (untimed), then N
 *      creates, 4 at a time, each claiming a pooled tenant: with no refill meanwhile, then (the pool filled again)
 *      with the refiller running, as in production;
 *   2. pool empty: the same API with the pool off (TENANT_WARM_POOL_SIZE=0), N creates, 4 at a time: each provisions
 *      its database, user and schema inline (the baseline: what every create cost before the pool).
 * The fleet: FLEET org rows on the default server, bulk-inserted into the shared DB (ACTIVE, named databases that
 * were never made): a create reads and locks only the shared DB and makes only its own database, so these rows are
 * what a fleet of that size costs it (placement counts, the claim's index scan).
 * Checked: every answer 201 with an ACTIVE org and a key; with the pool, every create claimed a pooled tenant.
 *
 *   npm run bench:warm-pool        BENCH_FLEET [10000], BENCH_CREATES [200]
 */
import { performance } from 'node:perf_hooks';
import { QueryTypes } from 'sequelize';
import { createDeps, type Deps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
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
  quantile,
  runBenchFile,
  runLoadThread,
  stopOnCtrlC,
  throwIfInterrupted,
  tunable,
  writeDocSection,
} from './bench-lib.js';

const DEFAULTS = { BENCH_FLEET: '10000', BENCH_CREATES: '200' };
const CONCURRENCY = 4;

/** Inserts `n` ACTIVE org rows on the default server in batches (rows only: their databases are never made). */
async function fakeFleet(deps: Deps, n: number, run: string): Promise<void> {
  const [server] = await deps.servers.activeIds('default');
  for (let i = 0; i < n; i += 1000) {
    const rows = Array.from({ length: Math.min(1000, n - i) }, (_, j) => {
      const k = i + j;
      return [
        `${run} fleet ${k}`,
        `00000000-0000-4000-8000-${String(k).padStart(12, '0')}`,
        'ACTIVE',
        0,
        server,
        `${run}_fleet_${k}`,
        `${run}_f${k}`,
        'x',
      ];
    });
    await deps.sharedDb.query(
      'INSERT INTO orgs (name, uid, status, credit_balance, db_server_id, db_name, db_user, db_password_enc) VALUES ?',
      { replacements: [rows] },
    );
  }
}

interface LoadSpec {
  url: string;
  token: string;
  names: string[];
}
interface Created {
  ms: number[];
  ids: number[];
}

/** N creates over HTTP, 4 at a time: each one's latency (ms), and the org ids. */
async function creates({ url, token, names }: LoadSpec): Promise<Created> {
  const ms: number[] = [];
  const ids: number[] = [];
  await mapWithConcurrency(names, CONCURRENCY, async (name) => {
    const started = performance.now();
    const res = await fetch(`${url}/orgs`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ name, credits: 10 }),
    });
    const body = (await res.json()) as { org?: { id: number; status: string }; apiKey?: string };
    ms.push(performance.now() - started);
    if (res.status !== 201 || body.org?.status !== 'ACTIVE' || !body.apiKey)
      throw new Error(`create ${name}: ${res.status} ${JSON.stringify(body)}`);
    ids.push(body.org.id);
    throwIfInterrupted();
  });
  return { ms: ms.sort((a, b) => a - b), ids };
}

async function main(): Promise<void> {
  const fleet = positiveInt(tunable('BENCH_FLEET', DEFAULTS), 'BENCH_FLEET');
  const n = positiveInt(tunable('BENCH_CREATES', DEFAULTS), 'BENCH_CREATES');
  const run = `b${Date.now().toString(36)}`;
  const log = (line: string) => console.error(`[bench:warm-pool] ${line}`);
  // Room on the default server for the fleet, the pool (filled three times) and every mode's creates.
  const capacity = String(fleet + 10 * n + 100);
  const warmConfig = loadRunConfig(run, {
    TENANT_WARM_POOL_SIZE: String(n),
    TENANT_WARM_POOL_REFILL_MS: '1000',
    DEFAULT_SERVER_CAPACITY: capacity,
  });
  const coldConfig = loadRunConfig(run, { TENANT_WARM_POOL_SIZE: '0', DEFAULT_SERVER_CAPACITY: capacity });
  const warm = createDeps(warmConfig, { subscribe: false });
  const cold = createDeps(coldConfig, { subscribe: false });
  stopOnCtrlC();
  try {
    await prepareRun(warmConfig, warm, false);
    await fakeFleet(warm, fleet, run);
    log(`fleet: ${fleet} org rows`);
    let started = performance.now();
    const made = await warm.pool.refill();
    const fillSeconds = (performance.now() - started) / 1000;
    log(`pool filled: ${made} tenants in ${fillSeconds.toFixed(1)} s`);

    const warmApi = await startServer(warm, 0);
    /** N creates through the warm API (the load in a thread of its own), each of which must claim a pooled tenant. */
    const claims = async (label: string) => {
      const pooled = new Set(
        (await warm.sharedDb.query<{ id: number }>("SELECT id FROM orgs WHERE status = 'POOLED'", { type: QueryTypes.SELECT })).map((r) =>
          Number(r.id),
        ),
      );
      const t0 = performance.now();
      const names = Array.from({ length: n }, (_, i) => `${run} ${label} ${i}`);
      const r = await runLoadThread<LoadSpec, Created>(import.meta.url, { url: warmApi.url, token: warmConfig.adminToken, names });
      const seconds = (performance.now() - t0) / 1000;
      const claimed = r.ids.filter((id) => pooled.has(id)).length;
      if (claimed !== n) throw new Error(`${label}: only ${claimed} of ${n} creates claimed a pooled tenant`);
      log(`${label}: p50 ${formatMs(quantile(r.ms, 0.5))} p99 ${formatMs(quantile(r.ms, 0.99))}`);
      return { ...r, seconds };
    };
    // A warm-up (untimed: JIT, connection pools), then with no refill running (what a claim costs alone), then as in
    // production: refilling while it claims.
    await claims('warm-up');
    await warm.pool.refill();
    const quiet = await claims('warm, no refill');
    await warm.pool.refill();
    warm.pool.start();
    const busy = await claims('warm, refilling');
    await warm.pool.stop();
    await warmApi.stop(1000);

    const coldApi = await startServer(cold, 0);
    started = performance.now();
    const b = await runLoadThread<LoadSpec, Created>(import.meta.url, {
      url: coldApi.url,
      token: coldConfig.adminToken,
      names: Array.from({ length: n }, (_, i) => `${run} cold ${i}`),
    });
    const coldSeconds = (performance.now() - started) / 1000;
    await coldApi.stop(1000);
    log(`empty: p50 ${formatMs(quantile(b.ms, 0.5))} p99 ${formatMs(quantile(b.ms, 0.99))}`);

    const row = (label: string, r: { ms: number[] }, seconds: number) => [
      label,
      formatMs(quantile(r.ms, 0.5)),
      formatMs(quantile(r.ms, 0.99)),
      formatMs(r.ms.at(-1)!),
      (n / seconds).toFixed(1),
    ];
    const table = markdownTable(['POST /orgs, 4 at a time', 'p50', 'p99', 'max', 'creates/s'], 'lrrrr', [
      row(`pool warm (${n} pooled), no refill meanwhile`, quiet, quiet.seconds),
      row(`pool warm (${n} pooled), refilling meanwhile (as in production)`, busy, busy.seconds),
      row('pool empty (provisioned inline: the baseline)', b, coldSeconds),
    ]);
    console.log(table);
    const ratio = quantile(b.ms, 0.99) / quantile(busy.ms, 0.99);
    const section = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${await describeMachine(warm.sharedDb)}.`,
      `Command: \`${commandLine('bench:warm-pool', ['BENCH_FLEET', 'BENCH_CREATES'])}\`.`,
      `${fleet} org rows on the default server in the shared DB (bulk-inserted rows: a create reads and locks only the shared DB and makes only its own database), then ${n} creates over HTTP, ${CONCURRENCY} at a time, in each mode (after as many untimed warm-up creates through the warm API), one after the other in one run; the API runs in this process, the load (fetch, 4 at a time) in a thread of its own. Every answer 201 with an ACTIVE org and its key; with the pool, every create claimed a tenant pooled before it began (filling ${made} pooled tenants took ${fillSeconds.toFixed(1)} s, untimed; refilled again, untimed, before the second pool row). p99 with the pool (refilling) is ${ratio.toFixed(1)}× lower than inline.`,
      '',
      table,
    ];
    log(`wrote ${await writeDocSection('warm-pool', '## Creating a tenant: the warm pool', section)}`);
  } finally {
    await cold.close().catch(() => undefined);
    await closeAndCleanUp(warm, warmConfig, run, log, true);
  }
}

runBenchFile(main, creates);
