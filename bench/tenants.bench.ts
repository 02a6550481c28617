/**
 * Tenant provisioning and migration benchmark, against the real MariaDB/MySQL server of the config.
 * Times creating N tenants (one at a time, then 4 at a time) and migrating N tenants at concurrency 1, 4 and 8,
 * prints the table and rewrites its section of docs/benchmarks.md. Everything it creates is dropped at the end.
 *
 *   npm run bench:tenants [-- --n 200]      (or BENCH_TENANTS=200; default 200)
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { QueryTypes, type Sequelize } from 'sequelize';
import { loadConfig, type Config } from '../config/config.js';
import { createSequelize } from '../src/db/sequelize.js';
import { prepareSharedDb } from '../src/db/shared-db.js';
import { createDeps, type Deps } from '../src/deps.js';
import { mapWithConcurrency } from '../src/lib/concurrency.js';

const DOC = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));
const START = '<!-- bench:tenants:start -->';
const END = '<!-- bench:tenants:end -->';
const SAFE_NAME = /^[A-Za-z0-9_]+$/;
const ROLLBACK_CONCURRENCY = 8;

interface Row {
  phase: 'create' | 'migrate';
  concurrency: number;
  seconds: number;
}

let interrupted = false;

/** N from --n, else BENCH_TENANTS, else 200. */
function tenantCount(): number {
  const { values } = parseArgs({ options: { n: { type: 'string' } } });
  const raw = values.n ?? process.env.BENCH_TENANTS ?? '200';
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`N must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** Throws once Ctrl-C was pressed, so that the run stops between steps and still cleans up. */
function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted');
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
  const outcomes = await mapWithConcurrency(names, concurrency, async (name): Promise<Outcome> => {
    try {
      const { org, apiKey } = await deps.orgs.create({ name, credits: 0 });
      if (org.status !== 'ACTIVE' || !apiKey) throw new Error(`ended ${org.status}${apiKey ? '' : ' without an API key'}`);
      return { id: org.id };
    } catch (error) {
      return { name, error };
    }
  }, (o) => 'error' in o || interrupted);
  checkInterrupted();
  const failed = outcomes.find((o) => 'error' in o);
  if (failed) throw new Error(`creating tenant ${failed.name} failed`, { cause: failed.error });
  if (outcomes.length !== names.length) throw new Error(`created ${outcomes.length} of ${names.length} tenants`);
  return outcomes.flatMap((o) => ('id' in o ? [o.id] : []));
}

/** Rolls the tenants back one migration (untimed), then times migrating them up; each must re-apply exactly that migration. */
async function migrateTimed(deps: Deps, ids: readonly number[], concurrency: number): Promise<{ seconds: number; migration: string }> {
  const reverted = new Map<number, string>();
  for (const r of await deps.migrations.rollback({ ids, step: 1, concurrency: ROLLBACK_CONCURRENCY })) {
    if (r.result !== 'ok' || r.migrations.length !== 1) throw new Error(`rollback of ${r.dbName}: ${r.result} [${r.migrations.join(', ')}] ${r.error ?? ''}`);
    reverted.set(r.orgId, r.migrations[0]!);
  }
  if (reverted.size !== ids.length) throw new Error(`rolled back ${reverted.size} of ${ids.length} tenants`);
  checkInterrupted();

  const [results, seconds] = await timed(() => deps.migrations.migrate({ ids, concurrency, skipFailing: true }));
  const bad = results.find((r) => r.result !== 'ok' || r.migrations.length !== 1 || r.migrations[0] !== reverted.get(r.orgId));
  if (bad) throw new Error(`migrate of ${bad.dbName}: ${bad.result}, applied [${bad.migrations.join(', ')}], expected [${reverted.get(bad.orgId)}] ${bad.error ?? ''}`);
  if (results.length !== ids.length) throw new Error(`migrated ${results.length} of ${ids.length} tenants`);
  return { seconds, migration: [...reverted.values()][0]! };
}

/** `LIKE` pattern matching names that start with `prefix`. */
function startsWith(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
}

/** Throws unless `name` is a plain name, safe to put in DDL. */
function safe(name: string): string {
  if (!SAFE_NAME.test(name)) throw new Error(`refusing unsafe name ${JSON.stringify(name)}`);
  return name;
}

/** Drops every database and MySQL user of this run, over an admin connection of its own (works whatever state deps is in). */
async function cleanup(config: Config, run: string): Promise<{ databases: number; users: number }> {
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

/** One line describing the machine and the database server. */
async function machine(admin: Sequelize): Promise<string> {
  const [row] = await admin.query<{ version: string }>('SELECT VERSION() AS version', { type: QueryTypes.SELECT });
  const cpus = os.cpus();
  return `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, `
    + `${os.type()} ${os.release()} ${os.arch()}; Node ${process.version}; database server ${row?.version ?? 'unknown'}`;
}

/** The command line of this run, as typed. */
function commandLine(): string {
  const env = process.env.BENCH_TENANTS ? `BENCH_TENANTS=${process.env.BENCH_TENANTS} ` : '';
  const args = process.argv.slice(2);
  if (process.env.npm_lifecycle_event === 'bench:tenants') return `${env}npm run bench:tenants${args.length ? ` -- ${args.join(' ')}` : ''}`;
  return `${env}node ${[...process.execArgv, path.relative(process.cwd(), process.argv[1]!), ...args].join(' ')}`;
}

/** The Markdown table: per phase and concurrency, seconds, tenants/s and the speed-up over concurrency 1 of that phase. */
function table(rows: readonly Row[], n: number): string {
  const lines = ['| phase | concurrency | total (s) | tenants/s | vs concurrency 1 |', '|---|---:|---:|---:|---:|'];
  for (const r of rows) {
    const baseline = rows.find((b) => b.phase === r.phase && b.concurrency === 1)!;
    lines.push(`| ${r.phase} | ${r.concurrency} | ${r.seconds.toFixed(2)} | ${(n / r.seconds).toFixed(1)} | ${(baseline.seconds / r.seconds).toFixed(2)}× |`);
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
    : `${current.trimEnd()}\n\n## Tenant provisioning and migration\n\n${block}\n`;
  await writeFile(DOC, next);
}

/** Runs the benchmark and cleans up after it, whatever happens. */
async function main(): Promise<void> {
  const n = tenantCount();
  const run = `b${Date.now().toString(36)}`;
  const config = loadConfig({
    ...process.env, DB_NAME: `${run}_shared`, TENANT_DB_PREFIX: `${run}_t`, QUEUE_PREFIX: run, LOG_LEVEL: 'silent', MIGRATION_LOCK_WAIT_SEC: '30',
  });
  const deps = createDeps(config, { subscribe: false });
  process.once('SIGINT', () => {
    interrupted = true;
    console.error('interrupted: stopping after the current step, then cleaning up');
  });
  const log = (line: string) => console.error(`[bench:tenants] ${line}`);
  try {
    await prepareSharedDb(config, deps.sharedDb);
    await deps.servers.ensureDefault();
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
    const block = [
      START,
      `Measured ${new Date().toISOString().slice(0, 10)} with \`${commandLine()}\` (N = ${n}).`,
      '',
      `- Machine: ${await machine(deps.sharedDb)}.`,
      '- **create**: `orgs.create` per tenant, end to end (create database, create user and grants, run the tenant migrations, '
        + 'first API key), one at a time and 4 at a time (`mapWithConcurrency`).',
      `- **migrate**: \`migrations.migrate({ ids, concurrency, skipFailing: true })\` over the N tenants created one at a time; before each mode every `
        + `tenant is rolled back one migration (\`${migration}\`, ${ROLLBACK_CONCURRENCY} at a time, not timed), and every tenant must re-apply exactly it.`,
      '- *vs concurrency 1*: speed-up over concurrency 1 of the same phase (its seconds ÷ these seconds; above 1 is faster).',
      '',
      result,
      END,
    ].join('\n');
    await writeDoc(block);
    log(`wrote ${path.relative(process.cwd(), DOC)}`);
  } finally {
    await deps.close().catch((err: unknown) => log(`closing deps failed: ${String(err)}`));
    const dropped = await cleanup(config, run);
    log(`cleaned up ${dropped.databases} databases and ${dropped.users} users of run ${run}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
