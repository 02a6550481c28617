/**
 * Fleet schema rollouts through bin/tenant as a child process: a canary and waves, the halt on the first failure,
 * retry of the failed tenants only, pause and resume, resume after the runner was killed with SIGKILL mid-wave, the
 * fleet status from the shared DB, a no-op migrate, and drift found by doctor. Each fleet has its own shared DB and
 * tenant prefix (a fleet of its own), migrated at first with the real tenant migrations; the rollouts then bring the
 * next version (test/fixtures/next-tenant-migrations: a column and an index on messages).
 */
import { expect } from 'chai';
import type { Sequelize } from 'sequelize';
import { NEXT_MIGRATION, nextMigrationsDir } from '../fixtures/next-migrations.js';
import { freePort } from '../../scripts/free-port.js';
import { RUN, cli, eventually, rootDb, rows } from '../helpers.js';
import { killHard } from '../processes.js';
import { CURRENT, expectExit, lastJson, makeFleet, startCli, tenantEvents, type Fleet, type Tenant } from './rollout-helpers.js';

describe('fleet schema rollouts (bin/tenant migrate, rollout, status, doctor)', function () {
  this.timeout(120_000);
  let next: Awaited<ReturnType<typeof nextMigrationsDir>>;
  let root: Sequelize;
  const fleets: Fleet[] = [];
  const fleet = async (label: string, size: number) => {
    const f = await makeFleet(label, size, next.dir);
    fleets.push(f);
    return f;
  };
  const columns = async (db: string) =>
    (
      await rows<{ c: string }>(
        root,
        "SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db AND TABLE_NAME = 'messages'",
        { db },
      )
    ).map((r) => r.c);
  /** A tenant the next migration cannot be applied to: its messages table already has an `archived_at` of another type. */
  const breakTenant = (t: Tenant) => root.query(`ALTER TABLE \`${t.dbName}\`.messages ADD COLUMN archived_at INT`);
  const repairTenant = (t: Tenant) => root.query(`ALTER TABLE \`${t.dbName}\`.messages DROP COLUMN archived_at`);

  before(async () => {
    next = await nextMigrationsDir();
    root = rootDb();
  });
  after(async () => {
    await Promise.allSettled(fleets.map((f) => f.deps.close()));
    await root?.close();
    await next?.remove();
  });

  describe('a canary, then the halt on the first failure, then retry', () => {
    let f: Fleet;
    before(async () => {
      f = await fleet('halt', 6);
      await breakTenant(f.tenants[2]!);
    });

    it('before the rollout, status answers from the shared DB: every tenant at the current version, all pending against the next', async () => {
      const r = await cli(['status', '--json'], f.env);
      expectExit(r, 0);
      expect(r.json).to.deep.include({ latest: NEXT_MIGRATION, versions: { [CURRENT]: 6 }, pending: 6 });
    });

    it('migrate --canary 1 --concurrency 1: the canary passes, the third tenant fails and halts the rollout; exit 1 names the rollout and the failure; the tenants after it are untouched', async () => {
      const r = await cli(['migrate', '--canary', '1', '--concurrency', '1', '--json'], f.env);
      expectExit(r, 1);
      const result = lastJson(r) as { rollout: { id: number; state: string; counts: Record<string, number> } };
      expect(result.rollout.state).to.equal('halted');
      expect(result.rollout.counts).to.deep.equal({ pending: 3, running: 0, done: 2, failed: 1 });
      const id = result.rollout.id;
      expect(tenantEvents(r).map((e) => [e.orgId, e.result])).to.deep.equal([
        [f.tenants[0]!.id, 'ok'],
        [f.tenants[1]!.id, 'ok'],
        [f.tenants[2]!.id, 'failed'],
      ]);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines, r.stderr).to.have.length(1);
      expect(lines[0]).to.match(
        new RegExp(`^error: rollout ${id} halted: .*org ${f.tenants[2]!.id}: .*Duplicate column name 'archived_at'`),
      );
      for (const t of f.tenants.slice(3)) expect(await columns(t.dbName), t.dbName).to.not.include('archived_at');

      const s = await cli(['rollout', 'status', '--json'], f.env);
      expectExit(s, 0);
      expect(s.json).to.deep.include({ id, state: 'halted', counts: { pending: 3, running: 0, done: 2, failed: 1 } });
      expect(s.json.failures).to.have.length(1);
      expect(s.json.failures[0]).to.include({ orgId: f.tenants[2]!.id, result: 'failed' });

      const fleetStatus = await cli(['status', '--json'], f.env);
      expect(fleetStatus.json).to.deep.include({ versions: { [NEXT_MIGRATION]: 2, [CURRENT]: 4 }, pending: 4, failed: 1 });
    });

    it('after the fix, rollout retry runs the failed tenant and the pending ones, not the done ones; every tenant ends at the next version and doctor is clean', async () => {
      await repairTenant(f.tenants[2]!);
      const r = await cli(['rollout', 'retry', '--json'], f.env);
      expectExit(r, 0);
      expect(r.json).to.deep.include({ state: 'done', counts: { pending: 0, running: 0, done: 6, failed: 0 } });
      expect(tenantEvents(r).map((e) => e.orgId)).to.deep.equal(f.tenants.slice(2).map((t) => t.id));
      expect(tenantEvents(r).every((e) => e.result === 'ok')).to.equal(true);

      const s = await cli(['status', '--json'], f.env);
      expect(s.json).to.deep.include({ latest: NEXT_MIGRATION, versions: { [NEXT_MIGRATION]: 6 }, pending: 0, failed: 0 });
      const d = await cli(['doctor', '--json'], f.env);
      expectExit(d, 0);
      expect(d.json).to.deep.include({ checked: 6, drifted: [] });
      // Each server's table caches against its tenants' tables (advice, never drift): 6 tenants of 3 tables or more.
      const [server] = d.json.servers as { tables: number; tableOpenCache: number; tableDefinitionCache: number; advice: string[] }[];
      expect(server!.tables).to.be.at.least(18);
      const small = server!.tableOpenCache < server!.tables || server!.tableDefinitionCache < server!.tables;
      expect(server!.advice.length > 0, 'advice exactly when a cache is below the tables').to.equal(small);
    });

    it('a no-op migrate creates no rollout (the record says every tenant is at the latest, and their own tables agree): exit 0', async () => {
      const r = await cli(['migrate', '--json'], f.env);
      expectExit(r, 0);
      expect(r.json).to.deep.include({ latest: NEXT_MIGRATION, upToDate: 6, rollout: null, results: [], failed: 0 });
      expect(tenantEvents(r)).to.have.length(0);
    });

    it('the cheap check catches a tenant whose own table lost the latest migration although the record has it: migrate brings back exactly that one', async () => {
      const t = f.tenants[4]!;
      await root.query(`ALTER TABLE \`${t.dbName}\`.messages DROP INDEX messages_archived_at, DROP COLUMN archived_at`);
      await root.query(`DELETE FROM \`${t.dbName}\`.schema_migrations WHERE name = :name`, { replacements: { name: NEXT_MIGRATION } });
      const r = await cli(['migrate', '--json'], f.env);
      expectExit(r, 0);
      expect(tenantEvents(r).map((e) => [e.orgId, e.migrations])).to.deep.equal([[t.id, [NEXT_MIGRATION]]]);
      expect(await columns(t.dbName)).to.include('archived_at');
    });
  });

  describe('a failing canary', () => {
    it('halts the rollout before any other tenant is touched', async () => {
      const f = await fleet('can', 3);
      await breakTenant(f.tenants[0]!);
      const r = await cli(['migrate', '--canary', '1', '--json'], f.env);
      expectExit(r, 1);
      expect(lastJson(r)).to.deep.nested.include({ 'rollout.state': 'halted' });
      expect((lastJson(r).rollout as { counts: unknown }).counts).to.deep.equal({ pending: 2, running: 0, done: 0, failed: 1 });
      expect(tenantEvents(r).map((e) => e.orgId)).to.deep.equal([f.tenants[0]!.id]);
      for (const t of f.tenants.slice(1)) expect(await columns(t.dbName)).to.not.include('archived_at');
    });
  });

  describe('--skip-failing', () => {
    it('never halts (the rollout ends done with its failures, exit 1); rollout retry then runs only the failed tenant', async () => {
      const f = await fleet('skip', 4);
      await breakTenant(f.tenants[1]!);
      const r = await cli(['migrate', '--skip-failing', '--canary', '1', '--concurrency', '2', '--json'], f.env);
      expectExit(r, 1);
      expect(lastJson(r).rollout).to.deep.include({ state: 'done', counts: { pending: 0, running: 0, done: 3, failed: 1 } });
      expect(r.stderr).to.match(/rollout retry/);

      await repairTenant(f.tenants[1]!);
      const again = await cli(['rollout', 'retry', '--json'], f.env);
      expectExit(again, 0);
      expect(tenantEvents(again).map((e) => [e.orgId, e.result])).to.deep.equal([[f.tenants[1]!.id, 'ok']]);
      expect(again.json.counts).to.deep.equal({ pending: 0, running: 0, done: 4, failed: 0 });
    });
  });

  describe('pause and resume', () => {
    it('a pause from another process: the runner finishes the tenant it is on, starts no other, and exits 1 saying so; rollout resume completes it', async () => {
      const f = await fleet('pause', 5);
      const run = startCli(['migrate', '--canary', '1', '--concurrency', '1', '--json'], { ...f.env, TEST_MIGRATION_SLOW_MS: '800' });
      await run.waitFor((e) => e.event === 'tenant');
      // Paused from this process (what `rollout pause` does), at once: the CLI would start too slowly to land mid-run.
      expect((await f.deps.fleet.pause()).state).to.equal('paused');
      const ended = await run.ended;
      expect(ended.code, ended.stderr).to.equal(1);
      expect(ended.stderr).to.match(/paused .*bin\/tenant rollout resume/);
      const s = await cli(['rollout', 'status', '--json'], f.env);
      expect(s.json.state).to.equal('paused');
      expect(s.json.counts.running).to.equal(0);
      expect(s.json.counts.pending).to.be.above(0);
      const again = await cli(['rollout', 'pause', '--json'], f.env);
      expectExit(again, 1);
      expect(again.stderr).to.match(/^error: ROLLOUT_NOT_RUNNING: rollout \d+ is paused/);

      const r = await cli(['rollout', 'resume', '--json'], f.env);
      expectExit(r, 0);
      expect(r.json).to.deep.include({ state: 'done', counts: { pending: 0, running: 0, done: 5, failed: 0 } });
    });
  });

  describe('the runner killed with SIGKILL mid-wave', () => {
    it('leaves the rollout running with no runner; rollout resume finishes it (a tenant whose DDL ran but was not recorded is recognised), every tenant at the latest, doctor clean', async () => {
      const f = await fleet('kill', 6);
      // Slow after the DDL: the kill lands while tenants are between their ALTER and its record.
      const run = startCli(['migrate', '--canary', '1', '--concurrency', '2', '--json'], { ...f.env, TEST_MIGRATION_SLOW_MS: '1000' });
      await run.waitFor((e) => e.event === 'wave' && e.wave === 1);
      // The moment a tenant of the second wave has its new column but no result yet: its DDL ran, its record did not.
      let caught: Tenant | undefined;
      const seen = () => new Set(run.events.filter((e) => e.event === 'tenant').map((e) => e.orgId));
      expect(
        await eventually(async () => {
          for (const t of f.tenants.slice(1)) if (!seen().has(t.id) && (await columns(t.dbName)).includes('archived_at')) caught = t;
          return caught !== undefined;
        }, 30_000),
        'a tenant between its DDL and its record',
      ).to.equal(true);
      await killHard(run.child);

      const s = await cli(['rollout', 'status', '--json'], f.env);
      expectExit(s, 0);
      expect(s.json.state).to.equal('running');
      expect(s.json.runner, 'no process runs it').to.equal(false);
      expect(s.json.counts.done, 'done before the kill (the record may lag the tenants)').to.be.within(1, 5);

      const r = await cli(['rollout', 'resume', '--json'], f.env);
      expectExit(r, 0);
      expect(r.json).to.deep.include({ state: 'done', counts: { pending: 0, running: 0, done: 6, failed: 0 } });
      const resumed = tenantEvents(r).find((e) => e.orgId === caught!.id);
      expect(resumed, 'the caught tenant: applied, not recorded, recorded now without running it again').to.deep.include({
        result: 'ok',
        migrations: [NEXT_MIGRATION],
        adopted: [NEXT_MIGRATION],
      });
      for (const t of f.tenants) expect(await columns(t.dbName), t.dbName).to.include('archived_at');
      const st = await cli(['status', '--json'], f.env);
      expect(st.json).to.deep.include({ versions: { [NEXT_MIGRATION]: 6 }, pending: 0 });
      const d = await cli(['doctor', '--json'], f.env);
      expectExit(d, 0);
      expect(d.json.drifted).to.deep.equal([]);
    });
  });

  describe('a tenant whose server does not answer', () => {
    it('fails as unreachable (the others migrate with --skip-failing); status counts it failed and unreachable, and pending', async () => {
      const f = await fleet('down', 3);
      const t = f.tenants[1]!;
      // Its org points at a server nothing listens on (the port was free a moment ago).
      const nowhere = await f.deps.servers.add({
        name: `nowhere-${RUN}`,
        host: '127.0.0.1',
        port: await freePort(),
        user: 'root',
        password: '',
      });
      await f.deps.sharedDb.query('UPDATE orgs SET db_server_id = :server WHERE id = :id', {
        replacements: { server: nowhere.id, id: t.id },
      });
      const r = await cli(['migrate', '--skip-failing', '--json'], f.env);
      expectExit(r, 1);
      expect(tenantEvents(r).map((e) => [e.orgId, e.result])).to.deep.equal([
        [f.tenants[0]!.id, 'ok'],
        [t.id, 'failed'],
        [f.tenants[2]!.id, 'ok'],
      ]);
      const s = await cli(['status', '--json'], f.env);
      expect(s.json).to.deep.include({ versions: { [NEXT_MIGRATION]: 2 }, pending: 1, failed: 1, unreachable: 1 });
    });
  });

  describe('doctor', () => {
    it('finds a dropped index and a missing column, names the tenant and the difference, exits 1; nothing else drifted', async () => {
      const f = await fleet('doc', 3);
      const [a, b] = f.tenants;
      await root.query(`ALTER TABLE \`${a!.dbName}\`.messages DROP INDEX messages_status_updated_at`);
      await root.query(`ALTER TABLE \`${b!.dbName}\`.messages DROP COLUMN provider_message_id`);
      const r = await cli(['doctor', '--json'], f.env);
      expectExit(r, 1);
      const report = lastJson(r) as { checked: number; drifted: { orgId: number; differences: string[] }[] };
      expect(report.checked).to.equal(3);
      expect(report.drifted.map((d) => d.orgId)).to.deep.equal([a!.id, b!.id]);
      expect(report.drifted[0]!.differences).to.deep.equal(['messages: missing index messages_status_updated_at (status, updated_at)']);
      expect(report.drifted[1]!.differences).to.have.length(1);
      expect(report.drifted[1]!.differences[0]).to.match(/^messages: missing column provider_message_id varchar\(255\)/);
      expect(r.stderr).to.match(/^error: 2 of 3 tenant\(s\) drifted/);
    });
  });
});
