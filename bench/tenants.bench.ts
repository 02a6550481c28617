/**
 * Tenant provisioning and migration benchmark, against the real MariaDB/MySQL server of the config.
 * Times creating N tenants (one at a time, then 4 at a time) and migrating N tenants at concurrency 1, 4 and 8,
 * prints the table and rewrites its section of docs/benchmarks.md. Everything it creates is dropped at the end.
 *
 *   npm run bench:tenants [-- --n 200]      (or BENCH_TENANTS=200; default 200)
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createDeps, type Deps } from '../src/deps.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import {
  closeAndCleanUp,
  commandLine,
  describeMachine,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  runBenchFile,
  stopOnCtrlC,
  throwIfInterrupted,
  wasInterrupted,
  writeDocSection,
} from './bench-lib.js';

const ROLLBACK_CONCURRENCY = 8;

interface Row {
  phase: 'create' | 'migrate';
  concurrency: number;
  seconds: number;
}

/** N from --n, else BENCH_TENANTS, else 200. */
function tenantCount(): number {
  const { values } = parseArgs({ options: { n: { type: 'string' } } });
  return positiveInt(values.n ?? process.env.BENCH_TENANTS ?? '200', 'N');
}

/** Runs fn; returns its result and the wall-clock seconds it took. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await fn();
  return [result, (performance.now() - started) / 1000];
}

/** Creates one tenant per name, `concurrency` at a time; returns their org ids, or throws unless every one ended ACTIVE with a key. */
async function createTenants(deps: Deps, names: readonly string[], concurrency: number): Promise<number[]> {
  type Outcome = { id: number } | { name: string; error: unknown };
  // Failures are returned, not thrown: a rejection would leave the other lanes creating tenants behind our back.
  const outcomes = await mapWithConcurrency(
    names,
    concurrency,
    async (name): Promise<Outcome> => {
      try {
        const { org, apiKey } = await deps.orgs.create({ name, credits: 0 });
        if (org.status !== 'ACTIVE' || !apiKey) throw new Error(`ended ${org.status}${apiKey ? '' : ' without an API key'}`);
        return { id: org.id };
      } catch (error) {
        return { name, error };
      }
    },
    (o) => 'error' in o || wasInterrupted(),
  );
  throwIfInterrupted();
  const failed = outcomes.find((o) => 'error' in o);
  if (failed) throw new Error(`creating tenant ${failed.name} failed`, { cause: failed.error });
  if (outcomes.length !== names.length) throw new Error(`created ${outcomes.length} of ${names.length} tenants`);
  return outcomes.flatMap((o) => ('id' in o ? [o.id] : []));
}

/** Rolls the tenants back one migration (untimed), then times migrating them up; each must re-apply exactly that migration. */
async function migrateTimed(deps: Deps, ids: readonly number[], concurrency: number): Promise<{ seconds: number; migration: string }> {
  const reverted = new Map<number, string>();
  for (const r of await deps.migrations.rollback({ ids, step: 1, concurrency: ROLLBACK_CONCURRENCY })) {
    if (r.result !== 'ok' || r.migrations.length !== 1)
      throw new Error(`rollback of ${r.dbName}: ${r.result} [${r.migrations.join(', ')}] ${r.error ?? ''}`);
    reverted.set(r.orgId, r.migrations[0]!);
  }
  if (reverted.size !== ids.length) throw new Error(`rolled back ${reverted.size} of ${ids.length} tenants`);
  throwIfInterrupted();

  const [results, seconds] = await timed(() => deps.migrations.migrate({ ids, concurrency, skipFailing: true }));
  const bad = results.find((r) => r.result !== 'ok' || r.migrations.length !== 1 || r.migrations[0] !== reverted.get(r.orgId));
  if (bad)
    throw new Error(
      `migrate of ${bad.dbName}: ${bad.result}, applied [${bad.migrations.join(', ')}], expected [${reverted.get(bad.orgId)}] ${bad.error ?? ''}`,
    );
  if (results.length !== ids.length) throw new Error(`migrated ${results.length} of ${ids.length} tenants`);
  return { seconds, migration: [...reverted.values()][0]! };
}

/** The Markdown table: per phase and concurrency, seconds, tenants/s and the speed-up over concurrency 1 of that phase. */
function table(rows: readonly Row[], n: number): string {
  return markdownTable(
    ['phase', 'concurrency', 'total (s)', 'tenants/s', 'vs concurrency 1'],
    'lrrrr',
    rows.map((r) => {
      const baseline = rows.find((b) => b.phase === r.phase && b.concurrency === 1)!;
      return [r.phase, r.concurrency, r.seconds.toFixed(2), (n / r.seconds).toFixed(1), `${(baseline.seconds / r.seconds).toFixed(2)}×`];
    }),
  );
}

/** Runs the benchmark and cleans up after it, whatever happens. */
async function main(): Promise<void> {
  const n = tenantCount();
  const run = `b${Date.now().toString(36)}`;
  const config = loadRunConfig(run, { MIGRATION_LOCK_WAIT_SEC: '30' });
  const deps = createDeps(config, { subscribe: false });
  stopOnCtrlC();
  const log = (line: string) => console.error(`[bench:tenants] ${line}`);
  try {
    await prepareRun(config, deps, false);
    const names = (kind: string) => Array.from({ length: n }, (_, i) => `${run}-${kind}-${i + 1}`);
    const rows: Row[] = [];

    const [ids, createSeq] = await timed(() => createTenants(deps, names('seq'), 1));
    rows.push({ phase: 'create', concurrency: 1, seconds: createSeq });
    log(`create c1: ${n} tenants in ${createSeq.toFixed(2)} s`);
    const [, createPar] = await timed(() => createTenants(deps, names('par'), 4));
    rows.push({ phase: 'create', concurrency: 4, seconds: createPar });
    log(`create c4: ${n} tenants in ${createPar.toFixed(2)} s`);

    // Only the N sequentially created tenants are migrated, so every migrate mode does the same N tenants' work.
    let migration = '';
    for (const concurrency of [1, 4, 8]) {
      const m = await migrateTimed(deps, ids, concurrency);
      migration = m.migration;
      rows.push({ phase: 'migrate', concurrency, seconds: m.seconds });
      log(`migrate c${concurrency}: ${n} tenants in ${m.seconds.toFixed(2)} s`);
    }

    const result = table(rows, n);
    console.log(result);
    // An empty BENCH_TENANTS is left out of the command line, as it always was.
    const vars = process.env.BENCH_TENANTS ? ['BENCH_TENANTS'] : [];
    const section = [
      `Measured ${new Date().toISOString().slice(0, 10)} with \`${commandLine('bench:tenants', vars)}\` (N = ${n}).`,
      '',
      `- Machine: ${await describeMachine(deps.sharedDb)}.`,
      '- **create**: `orgs.create` per tenant, end to end (create database, create user and grants, run the tenant migrations, ' +
        'first API key), one at a time and 4 at a time (`mapWithConcurrency`).',
      `- **migrate**: \`migrations.migrate({ ids, concurrency, skipFailing: true })\` over the N tenants created one at a time; before each mode every ` +
        `tenant is rolled back one migration (\`${migration}\`, ${ROLLBACK_CONCURRENCY} at a time, not timed), and every tenant must re-apply exactly it.`,
      '- *vs concurrency 1*: speed-up over concurrency 1 of the same phase (its seconds ÷ these seconds; above 1 is faster).',
      '',
      result,
    ];
    log(`wrote ${await writeDocSection('tenants', '## Tenant provisioning and migration', section)}`);
  } finally {
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main);
