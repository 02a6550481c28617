/**
 * Fleet schema rollouts at scale: ROLLOUT_TENANTS (10,000) tenants created through `orgs.create`, then, with the next
 * tenant migration deployed (test/fixtures/next-tenant-migrations: a column and an index on `messages`, one ALTER):
 *   - `bin/tenant status` (the fleet summary from the shared DB);
 *   - `bin/tenant migrate --concurrency C`: the rollout applying the new migration to every tenant;
 *   - `bin/tenant migrate` again (nothing to do: decided from the record, checked against each database's own table);
 *   - `bin/tenant status` and `bin/tenant doctor`;
 *   - the migration after it (another column and index): a rollout killed with SIGKILL after ROLLOUT_KILL_AFTER
 *     tenants, then `bin/tenant rollout resume`; status and doctor must then find every tenant at the latest version
 *     and nothing drifted;
 * each timed as the operator sees it (the CLI's wall time, start-up included) and as the operation alone (the same
 * service call in this process). The baseline, side by side in the same run on the same fleet: the per-tenant path
 * the CLI used before (`migrations.migrate`: a Sequelize instance and connection per tenant), with nothing to do and
 * applying the same migration (then `bin/tenant rollback --step 1 --force` takes it off again); and the floor: the
 * bare ALTER TABLE over raw connections on scratch copies of a tenant's table.
 *
 *   flock /tmp/bench.lock npm run bench:rollout
 *
 * Tunables (defaults in brackets): ROLLOUT_TENANTS [10000], ROLLOUT_CONCURRENCY [8] (per MySQL server; the baseline
 * runs as many at once), FLEET_CREATE_CONCURRENCY [8], ROLLOUT_KILL_AFTER [3000], ROLLOUT_CREATE [bulk] (`create`:
 * every tenant through orgs.create, about 40/s here at best). Everything it creates is removed.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createDeps, type Deps } from '../src/deps.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import mysql from 'mysql2/promise';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Config } from '../config/config.js';
import type { OrgRecord } from '../src/orgs/domain/org.js';
import { AFTER_NEXT_MIGRATION, NEXT_MIGRATION, nextMigrationsDir } from '../test/fixtures/next-migrations.js';
import {
  closeAndCleanUp,
  commandLine,
  describeMachine,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  runBenchFile,
  safeSqlName,
  stopOnCtrlC,
  throwIfInterrupted,
  tunable,
  writeDocSection,
} from './bench-lib.js';

const DEFAULTS = {
  ROLLOUT_TENANTS: '10000',
  ROLLOUT_CONCURRENCY: '8',
  FLEET_CREATE_CONCURRENCY: '8',
  ROLLOUT_KILL_AFTER: '3000',
  ROLLOUT_CREATE: 'bulk',
} as const;
const int = (name: keyof typeof DEFAULTS) => positiveInt(tunable(name, DEFAULTS), name);
const TENANTS = int('ROLLOUT_TENANTS');
const C = int('ROLLOUT_CONCURRENCY');
const KILL_AFTER = Math.min(int('ROLLOUT_KILL_AFTER'), TENANTS - 1);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** `bulk` (default): tenants 2..N copied from the first in bulk SQL; `create`: each through orgs.create (minutes more). */
const BULK = tunable('ROLLOUT_CREATE', DEFAULTS) !== 'create';
const log = (line: string) => console.error(line);

interface CliRun {
  code: number | null;
  seconds: number;
  /** The last JSON line (the result). */
  result: Record<string, unknown>;
  events: number;
}

/** Runs bin/tenant; with `killAfter`, kills it with SIGKILL once that many tenant events were printed. */
function tenantCli(args: string[], env: Record<string, string>, killAfter?: number): Promise<CliRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(`${ROOT}bin/tenant`, [...args, '--json'], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let partial = '';
    let last = '';
    let events = 0;
    child.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines.filter(Boolean)) {
        last = line;
        if (line.startsWith('{"event":"tenant"') && ++events === killAfter) child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (partial) last = partial;
      let result: Record<string, unknown> = {};
      try {
        result = JSON.parse(last) as Record<string, unknown>;
      } catch {
        // killed mid-line
      }
      resolve({ code, seconds: (performance.now() - started) / 1000, result, events });
    });
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, seconds: (performance.now() - started) / 1000 };
}

function check(ok: boolean, what: string, detail: unknown): void {
  if (!ok) throw new Error(`${what}: ${JSON.stringify(detail).slice(0, 2000)}`);
}

const s = (x: number) => `${x.toFixed(x < 10 ? 2 : 1)} s`;

/**
 * The machine's floor at this moment: the same ALTER TABLE over raw mysql2 connections (no lock, no bookkeeping) on
 * `count` scratch copies of a tenant's messages table, `concurrency` at a time; answers tenants per second.
 */
async function alterFloor(config: Config, run: string, template: string, count: number, concurrency: number): Promise<number> {
  const admin = await mysql.createConnection({
    host: config.db.host,
    port: config.db.port,
    user: config.db.user,
    password: config.db.password,
  });
  const names = Array.from({ length: count }, (_, i) => safeSqlName(`${run}_floor${i}`));
  try {
    for (const db of names) {
      await admin.query(`CREATE DATABASE \`${db}\``);
      await admin.query(`CREATE TABLE \`${db}\`.messages LIKE \`${safeSqlName(template)}\`.messages`);
      await admin.query(`INSERT INTO \`${db}\`.messages SELECT * FROM \`${safeSqlName(template)}\`.messages`);
    }
    const conns = await Promise.all(
      Array.from({ length: concurrency }, () =>
        mysql.createConnection({ host: config.db.host, port: config.db.port, user: config.db.user, password: config.db.password }),
      ),
    );
    let next = 0;
    const started = performance.now();
    await Promise.all(
      conns.map(async (c) => {
        for (let i = next++; i < names.length; i = next++) {
          await c.query(`USE \`${names[i]}\``);
          await c.query('ALTER TABLE messages ADD COLUMN archived_at DATETIME(3) NULL, ADD INDEX messages_archived_at (archived_at)');
        }
      }),
    );
    const rate = names.length / ((performance.now() - started) / 1000);
    await Promise.all(conns.map((c) => c.end()));
    return rate;
  } finally {
    for (const db of names) await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await admin.end();
  }
}

/** Tenants 2..N through the normal path (database, user and grants, migrations, first key), 2 messages each. */
async function viaCreate(deps: Deps, root: Sequelize, run: string): Promise<void> {
  await mapWithConcurrency(
    Array.from({ length: TENANTS - 1 }, (_, i) => i + 2),
    int('FLEET_CREATE_CONCURRENCY'),
    async (n) => {
      throwIfInterrupted();
      const { org } = await deps.orgs.create({ name: `${run}-${n}`, credits: 10 });
      await root.query(
        `INSERT INTO \`${org.dbName!}\`.messages (\`to\`, channel, body, cost, status) VALUES ('+15551234567', 'sms', 'a', 1, 'SENT'), ('+15551234567', 'sms', 'b', 1, 'SENT')`,
      );
      if (n % 1000 === 0) log(`  ${n} tenants`);
    },
  );
}

/**
 * Tenants 2..N as what provisioning leaves, made in bulk (a rollout only touches the databases): ACTIVE org rows,
 * each with its database holding copies of the first tenant's tables and rows (messages, schema_migrations, the owner
 * marker with its own uid) and its version recorded. No MySQL user per tenant: migrations run as the server's admin.
 */
async function bulkFleet(deps: Deps, root: Sequelize, template: OrgRecord, run: string): Promise<void> {
  const prefix = deps.config.tenant.dbPrefix;
  const names = Array.from({ length: TENANTS - 1 }, (_, i) => `${run}-${i + 2}`);
  for (let i = 0; i < names.length; i += 1000)
    await deps.sharedDb.query(`INSERT INTO orgs (name, uid, status, credit_balance, db_server_id, db_password_enc) VALUES ?`, {
      replacements: [names.slice(i, i + 1000).map((n) => [n, randomUUID(), 'ACTIVE', 0, template.dbServerId, template.dbPasswordEnc])],
    });
  await deps.sharedDb.query(
    'UPDATE orgs SET db_name = CONCAT(:prefix, id), db_user = CONCAT(:prefix, id) WHERE name LIKE :like AND id <> :first',
    { replacements: { prefix, like: `${run}-%`, first: template.id } },
  );
  const orgs = await deps.sharedDb.query<{ id: number; uid: string; db_name: string }>(
    'SELECT id, uid, db_name FROM orgs WHERE name LIKE :like AND id <> :first ORDER BY id',
    { replacements: { like: `${run}-%`, first: template.id }, type: QueryTypes.SELECT },
  );
  const from = safeSqlName(template.dbName!);
  let made = 0;
  await mapWithConcurrency(orgs, int('FLEET_CREATE_CONCURRENCY'), async (o) => {
    throwIfInterrupted();
    const db = `\`${safeSqlName(o.db_name)}\``;
    await root.query(`CREATE DATABASE ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
    for (const table of ['messages', 'schema_migrations', 'tenancy_owner']) {
      await root.query(`CREATE TABLE ${db}.${table} LIKE \`${from}\`.${table}`);
      if (table !== 'tenancy_owner') await root.query(`INSERT INTO ${db}.${table} SELECT * FROM \`${from}\`.${table}`);
    }
    await root.query(`INSERT INTO ${db}.tenancy_owner (org_id, org_uid) VALUES (?, ?)`, { replacements: [o.id, o.uid] });
    if (++made % 1000 === 0) log(`  ${made + 1} tenants`);
  });
  const version = (await deps.versions.tenants([template.id]))[0]!.version ?? null;
  for (let i = 0; i < orgs.length; i += 1000)
    await deps.versions.record(
      orgs.slice(i, i + 1000).map((o) => ({ serverId: template.dbServerId!, dbName: o.db_name, orgId: o.id, version })),
    );
}

async function main(): Promise<void> {
  stopOnCtrlC();
  const run = `ro${randomBytes(3).toString('hex')}`;
  const config = loadRunConfig(run, {});
  const next = await nextMigrationsDir(1);
  const afterNext = await nextMigrationsDir(2);
  const base = { DB_NAME: config.db.name, TENANT_DB_PREFIX: config.tenant.dbPrefix, QUEUE_PREFIX: run, LOG_LEVEL: 'error' };
  const nextEnv = { ...base, TENANT_MIGRATIONS_DIR: next.dir };
  const afterNextEnv = { ...base, TENANT_MIGRATIONS_DIR: afterNext.dir };
  const deps = createDeps(config, { role: 'cli', subscribe: false });
  let deployed: Deps | undefined;
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 2 });
  try {
    await prepareRun(config, deps, false);
    log(`creating ${TENANTS} tenants (${BULK ? 'in bulk, as copies of the first' : 'through orgs.create'})…`);
    const { org: template } = await deps.orgs.create({ name: `${run}-1`, credits: 10 });
    const first = template.dbName!;
    await root.query(
      `INSERT INTO \`${first}\`.messages (\`to\`, channel, body, cost, status) VALUES ('+15551234567', 'sms', 'a', 1, 'SENT'), ('+15551234567', 'sms', 'b', 1, 'SENT')`,
    );
    const created = await timed(() => (BULK ? bulkFleet(deps, root, template, run) : viaCreate(deps, root, run)));

    log('the floor: the same ALTER TABLE over raw connections on scratch copies…');
    const floor = await alterFloor(config, run, first, Math.min(500, TENANTS), C);

    log('baseline: the per-tenant path with nothing to apply…');
    const baseNoop = await timed(() => deps.migrations.migrate({ concurrency: C, skipFailing: true }));
    check(
      baseNoop.value.every((r) => r.result === 'ok' && r.migrations.length === 0),
      'baseline no-op',
      baseNoop.value.find((r) => r.result !== 'ok'),
    );

    // The next migration is deployed from here on.
    deployed = createDeps(loadRunConfig(run, { TENANT_MIGRATIONS_DIR: next.dir }), { role: 'cli', subscribe: false });
    const fleet = deployed.fleet;
    log('baseline: the per-tenant path applying the new migration…');
    const baseApply = await timed(() => deployed!.migrations.migrate({ concurrency: C, skipFailing: true }));
    check(
      baseApply.value.every((r) => r.result === 'ok' && r.migrations.length === 1),
      'baseline apply',
      baseApply.value.find((r) => r.result !== 'ok'),
    );
    log('rolling it back (per-tenant path)…');
    const back = await tenantCli(['rollback', '--step', '1', '--force', '--concurrency', String(C)], nextEnv);
    check(back.code === 0, 'rollback', back.result.failed);

    log('status before the rollout…');
    const statusBefore = await tenantCli(['status'], nextEnv);
    check(statusBefore.result.pending === TENANTS, 'status before', statusBefore.result);
    const statusBeforeOp = await timed(() => fleet.fleet());

    log(`rollout of ${NEXT_MIGRATION} over ${TENANTS} tenants, ${C} at a time…`);
    const rollout = await tenantCli(['migrate', '--concurrency', String(C)], nextEnv);
    const counts = (rollout.result.rollout as { counts?: Record<string, number> } | null)?.counts;
    check(rollout.code === 0 && counts?.done === TENANTS, 'rollout', { code: rollout.code, counts });

    log('no-op migrate, status, doctor…');
    const noop = await tenantCli(['migrate', '--concurrency', String(C)], nextEnv);
    check(noop.code === 0 && noop.result.rollout === null && noop.result.upToDate === TENANTS, 'no-op migrate', noop.result);
    const noopOp = await timed(() => fleet.migrate({ concurrency: C, maxFailures: 0, skipFailing: false }));
    check(noopOp.value.rollout === undefined, 'no-op migrate (in process)', noopOp.value);
    const status = await tenantCli(['status'], nextEnv);
    check(status.result.pending === 0, 'status', status.result);
    const statusOp = await timed(() => fleet.fleet());
    const doctor = await tenantCli(['doctor'], nextEnv);
    check(doctor.code === 0 && (doctor.result.drifted as unknown[]).length === 0, 'doctor', doctor.result);
    const doctorOp = await timed(() => fleet.doctor());

    log(`the migration after it: a rollout killed with SIGKILL after ${KILL_AFTER} tenants, then resumed…`);
    const killed = await tenantCli(['migrate', '--concurrency', String(C)], afterNextEnv, KILL_AFTER);
    check(killed.code === null, 'the killed rollout ended by itself', killed);
    const resumed = await tenantCli(['rollout', 'resume'], afterNextEnv);
    const resumedCounts = resumed.result.counts as Record<string, number> | undefined;
    check(resumed.code === 0 && resumedCounts?.done === TENANTS, 'resume', { code: resumed.code, counts: resumedCounts });
    const afterStatus = await tenantCli(['status'], afterNextEnv);
    check(
      afterStatus.result.pending === 0 && afterStatus.result.latest === AFTER_NEXT_MIGRATION,
      'status after the resume',
      afterStatus.result,
    );
    const afterDoctor = await tenantCli(['doctor'], afterNextEnv);
    check(afterDoctor.code === 0, 'doctor after the resume', afterDoctor.result);

    const machine = await describeMachine(root);
    const faster = (a: number, b: number) => `${(b / a).toFixed(1)}× faster`;
    const rate = (seconds: number) => `${(TENANTS / seconds).toFixed(0)}/s`;
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${machine}.`,
      `Command: \`flock /tmp/bench.lock ${commandLine('bench:rollout', Object.keys(DEFAULTS))}\`.`,
      `${TENANTS} tenants on one MariaDB, 2 messages each, ${BULK ? `the first through \`orgs.create\`, the others as copies of it made in bulk SQL (org rows, databases with its tables and rows, versions recorded; no MySQL user each: migrations run as the admin)` : 'each through `orgs.create`'} in ${created.seconds.toFixed(0)} s; ` +
        `the new migration adds a column and an index to \`messages\` in one ALTER TABLE. \`bin/tenant\` runs through tsx here ` +
        `(its start-up, about 1.5 s of CPU, is in the CLI column; production runs the compiled CLI). ` +
        `Baseline: the per-tenant path \`bin/tenant migrate\` used before rollouts (a Sequelize instance and connection per tenant), ` +
        `${C} at a time, in this process, on the same fleet in the same run. ` +
        `Floor: the same ALTER TABLE over ${C} raw connections on ${Math.min(500, TENANTS)} scratch copies of a tenant's table, nothing else: ` +
        `${floor.toFixed(0)} tenants/s at that moment (${(TENANTS / floor).toFixed(0)} s for ${TENANTS}).`,
      '',
      markdownTable(['operation', 'CLI (wall)', 'the operation alone', 'baseline', 'target'], 'lrrrl', [
        ['`status` (fleet summary, from the shared DB)', s(status.seconds), s(statusOp.seconds), s(baseNoop.seconds), '< 5 s (goal 1 s)'],
        [
          '`migrate` with nothing to do (the record, checked against each database’s own table)',
          s(noop.seconds),
          s(noopOp.seconds),
          `${s(baseNoop.seconds)} (${faster(noopOp.seconds, baseNoop.seconds)})`,
          '< 5 s (goal 1 s)',
        ],
        [
          `\`migrate --concurrency ${C}\`: the new migration on every tenant (a rollout: canary, waves)`,
          `${s(rollout.seconds)} (${rate(rollout.seconds)})`,
          '',
          `${s(baseApply.seconds)} (${rate(baseApply.seconds)}; ${faster(rollout.seconds, baseApply.seconds)})`,
          `< 30 s (floor ${(TENANTS / floor).toFixed(0)} s)`,
        ],
        [
          '`doctor` (every schema against the reference, one information_schema read per server)',
          s(doctor.seconds),
          s(doctorOp.seconds),
          '',
          '< 10 s',
        ],
        [
          `the migration after it: \`rollout resume\` after a SIGKILL at ${killed.events} tenants`,
          s(resumed.seconds),
          '',
          '',
          'every tenant at the latest, doctor clean',
        ],
      ]),
      '',
      `Before the rollout, \`status\` took ${s(statusBefore.seconds)} (${s(statusBeforeOp.seconds)} alone) and reported ${TENANTS} pending. ` +
        `\`bin/tenant rollback --step 1 --force\` (per-tenant path) took ${s(back.seconds)}. ` +
        `After the killed rollout (${killed.events} tenant results printed) was resumed, \`status\` reported 0 pending and \`doctor\` ` +
        `found nothing drifted (${s(afterDoctor.seconds)}).`,
    ];
    console.log(lines.join('\n'));
    log(`wrote ${await writeDocSection('rollout', '## Fleet schema rollouts (10,000 tenants)', lines)}`);
  } finally {
    await root.close();
    await deployed?.close();
    await next.remove();
    await afterNext.remove();
    log('cleaning up (dropping every database and user of the run)…');
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main);
