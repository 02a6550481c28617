/** Tenant migrations through bin/tenant: status, rollback, migrate (concurrency, failures, the per-database lock). */
import { expect } from 'chai';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Deps } from '../../src/deps.js';
import type { TenantMigrationResult, TenantStatus } from '../../src/orgs/domain/tenant-migrations.js';
import { cli, createTenant, rootDb, rows, testDeps, type CliResult } from '../helpers.js';

/** The tenant migration that creates the messages table, and the one after it (the latest). */
const MESSAGES = '20261122-0001-messages';
const PENDING_INDEX = '20261123-0001-pending-index';
/** What rolling back to before the messages table reverts (newest first), and what migrating up re-applies. */
const DOWN = [PENDING_INDEX, MESSAGES];
const UP = [MESSAGES, PENDING_INDEX];

interface Summary {
  shared?: string[];
  results: TenantMigrationResult[];
  failed: number;
}

/**
 * The --json summary of migrate/rollback, whatever the exit code (bin/tenant prints it before exiting 1 as well): the
 * last line of stdout (migrate prints one JSON line per event before it).
 */
function summary(r: CliResult): Summary {
  const lines = r.stdout.trimEnd().split('\n');
  for (const line of lines) expect(line, `stdout; stderr: ${r.stderr}`).to.match(/^\{.*\}$/);
  return JSON.parse(lines.at(-1)!) as Summary;
}

/** The result of one tenant in a summary. */
function resultOf(s: Summary, orgId: number): TenantMigrationResult {
  const found = s.results.filter((r) => r.orgId === orgId);
  expect(found, `results for org ${orgId} in ${JSON.stringify(s.results)}`).to.have.length(1);
  return found[0]!;
}

function expectOk(r: CliResult): void {
  expect(r.code, `exit code; stdout: ${r.stdout} stderr: ${r.stderr}`).to.equal(0);
}

describe('tenant migrations (bin/tenant migrate, status, rollback)', () => {
  let deps: Deps;
  let root: Sequelize;
  /** Every tenant made here: re-migrated afterwards, so no other test finds one half-migrated. */
  const created: number[] = [];

  const tenant = async () => {
    const t = await createTenant(deps);
    created.push(t.id);
    return t;
  };
  /** Reverts each tenant to before the messages table (through the service: not what is under test here). */
  const rollBack = async (ids: number[]) => {
    const results = await deps.migrations.rollback({ ids, step: DOWN.length, concurrency: 4 });
    expect(results.map((r) => [r.result, r.migrations])).to.deep.equal(ids.map(() => ['ok', DOWN]));
  };
  const hasMessages = async (db: string) =>
    (await rows(root, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db AND TABLE_NAME = 'messages'", { db }))
      .length === 1;
  const tenantArgs = (...ids: number[]) => ids.flatMap((id) => ['--tenant', String(id)]);

  before(() => {
    deps = testDeps({}, { subscribe: false });
    root = rootDb();
  });
  after(async () => {
    try {
      if (created.length) await deps.migrations.migrate({ ids: created, concurrency: 4, skipFailing: true });
    } finally {
      await deps?.close();
      await root?.close();
    }
  });

  describe('status', () => {
    it('a newly created tenant is already at the latest version: status shows its migrations applied and none pending', async () => {
      const t = await tenant();
      const r = await cli(['status', ...tenantArgs(t.id), '--json']);
      expectOk(r);
      const tenants = r.json.tenants as TenantStatus[];
      expect(tenants).to.have.length(1);
      expect(tenants[0]).to.include({ orgId: t.id, dbName: t.dbName });
      expect(tenants[0]!.error).to.equal(undefined);
      expect(tenants[0]!.applied).to.include(MESSAGES);
      expect(tenants[0]!.pending).to.deep.equal([]);
    });
  });

  describe('rollback and migrate one tenant', () => {
    it('rollback --step 2 reverts the latest two migrations (the messages table disappears), status shows it pending, and migrate re-applies it', async () => {
      const t = await tenant();

      const back = await cli(['rollback', ...tenantArgs(t.id), '--step', String(DOWN.length), '--json']);
      expectOk(back);
      expect(back.json.failed).to.equal(0);
      expect(resultOf(back.json, t.id)).to.deep.include({ result: 'ok', migrations: DOWN });
      expect(await hasMessages(t.dbName), 'messages table after rollback').to.equal(false);

      const status = await cli(['status', ...tenantArgs(t.id), '--json']);
      expectOk(status);
      expect((status.json.tenants as TenantStatus[])[0]!.pending).to.deep.equal(UP);
      expect((status.json.tenants as TenantStatus[])[0]!.applied).to.not.include(MESSAGES);

      const up = await cli(['migrate', ...tenantArgs(t.id), '--json']);
      expectOk(up);
      expect(up.json.failed).to.equal(0);
      expect(resultOf(up.json, t.id)).to.deep.include({ result: 'ok', migrations: UP });
      expect(await hasMessages(t.dbName), 'messages table after migrate').to.equal(true);
    });
  });

  describe('several tenants', () => {
    const ts: { id: number; dbName: string }[] = [];
    before(async () => {
      for (let i = 0; i < 3; i++) ts.push(await tenant());
      await rollBack(ts.map((t) => t.id));
    });

    it('migrate --concurrency 2 migrates every named tenant: each result ok, failed: 0, exit 0', async () => {
      const r = await cli(['migrate', ...tenantArgs(...ts.map((t) => t.id)), '--concurrency', '2', '--json']);
      expectOk(r);
      expect(r.json.failed).to.equal(0);
      expect(r.json.results).to.have.length(3);
      for (const t of ts) {
        expect(resultOf(r.json, t.id)).to.deep.include({ dbName: t.dbName, result: 'ok', migrations: UP });
        expect(await hasMessages(t.dbName), t.dbName).to.equal(true);
      }
    });
  });

  describe('a failing tenant', () => {
    let a: { id: number; dbName: string };
    let b: { id: number; dbName: string };
    let c: { id: number; dbName: string };
    before(async () => {
      a = await tenant();
      b = await tenant();
      c = await tenant();
      await rollBack([a.id, b.id, c.id]);
      // A stray `messages` table without the migration's columns: the migration cannot complete in b.
      await root.query(`CREATE TABLE \`${b.dbName}\`.messages (x INT)`);
    });
    after(async () => {
      await root.query(`DROP TABLE IF EXISTS \`${b.dbName}\`.messages`);
    });

    const args = () => ['migrate', ...tenantArgs(a.id, b.id, c.id), '--concurrency', '1', '--json'];

    it('without --skip-failing the run stops at the failure: a ok, b failed with its reason, c not-run, exit 1 with the summary on stdout', async () => {
      const r = await cli(args());
      expect(r.code, r.stderr).to.equal(1);
      const s = summary(r);
      expect(s.results).to.have.length(3);
      expect(resultOf(s, a.id)).to.deep.include({ result: 'ok', migrations: UP });
      expect(resultOf(s, b.id)).to.deep.include({ result: 'failed', migrations: [] });
      expect(resultOf(s, b.id).error, 'the reason names the migration that failed').to.be.a('string').that.includes(MESSAGES);
      expect(resultOf(s, c.id)).to.deep.include({ result: 'not-run', migrations: [] });
      expect(s.failed, 'tenants not brought up to date').to.equal(2);
      expect(await hasMessages(c.dbName), 'c was not touched').to.equal(false);
    });

    it('with --skip-failing it carries on past the failure: a and c ok, b failed, exit 1', async () => {
      const r = await cli([...args(), '--skip-failing']);
      expect(r.code, r.stderr).to.equal(1);
      const s = summary(r);
      expect(s.results).to.have.length(3);
      expect(resultOf(s, a.id).result).to.equal('ok');
      expect(resultOf(s, b.id).result).to.equal('failed');
      expect(resultOf(s, c.id)).to.deep.include({ result: 'ok', migrations: UP });
      expect(s.failed).to.equal(1);
      expect(await hasMessages(c.dbName), 'c migrated').to.equal(true);
    });

    it('a migrate run that exits 1 also gives its one-line reason on stderr, --json or not (DESIGN: CLI)', async () => {
      const r = await cli(['migrate', ...tenantArgs(b.id), '--json']);
      expect(r.code).to.equal(1);
      expect(resultOf(summary(r), b.id).result).to.equal('failed');
      const lines = r.stderr.trimEnd().split('\n').filter(Boolean);
      expect(lines, `stderr: ${JSON.stringify(r.stderr)}`).to.have.length(1);
      expect(lines[0]).to.match(/^error: /);
    });
  });

  describe('the per-tenant migration lock', () => {
    let t: { id: number; dbName: string };
    before(async () => {
      t = await tenant();
      await rollBack([t.id]);
    });

    it('a tenant whose lock another runner holds is reported locked (exit 1) and left alone; once released, migrate succeeds', async () => {
      const env = { MIGRATION_LOCK_WAIT_SEC: '1' };
      // The runner's lock name for a database name of at most 48 characters (longer ones are hashed).
      expect(t.dbName.length).to.be.at.most(48);
      const lockName = `tenancy:migrate:${t.dbName}`;
      // The lock lives on one connection: a transaction keeps that connection out of the pool until commit.
      const holder = rootDb();
      try {
        const tx = await holder.transaction();
        try {
          const [got] = await holder.query<{ got: number }>('SELECT GET_LOCK(:lockName, 10) AS got', {
            replacements: { lockName },
            type: QueryTypes.SELECT,
            transaction: tx,
          });
          expect(got?.got, 'the test holds the lock').to.equal(1);

          const r = await cli(['migrate', ...tenantArgs(t.id), '--json'], env);
          expect(r.code, r.stderr).to.equal(1);
          const s = summary(r);
          expect(resultOf(s, t.id)).to.deep.include({ result: 'locked', migrations: [] });
          expect(s.failed).to.equal(1);
          expect(await hasMessages(t.dbName), 'nothing migrated under a held lock').to.equal(false);
        } finally {
          await holder.query('SELECT RELEASE_LOCK(:lockName)', { replacements: { lockName }, transaction: tx });
          await tx.commit();
        }
      } finally {
        await holder.close();
      }

      const again = await cli(['migrate', ...tenantArgs(t.id), '--json'], env);
      expectOk(again);
      expect(resultOf(again.json, t.id)).to.deep.include({ result: 'ok', migrations: UP });
      expect(await hasMessages(t.dbName)).to.equal(true);
    });
  });

  describe('--shared-only', () => {
    let t: { id: number; dbName: string };
    before(async () => {
      t = await tenant();
      await rollBack([t.id]);
    });

    it('migrate --shared-only exits 0 with no tenant results, and a tenant with a pending migration stays pending', async () => {
      const r = await cli(['migrate', '--shared-only', '--json']);
      expectOk(r);
      expect(r.json).to.deep.include({ results: [], failed: 0 });
      expect(r.json.shared).to.be.an('array');
      expect(await hasMessages(t.dbName)).to.equal(false);
      const [status] = await deps.migrations.status({ ids: [t.id], concurrency: 1 });
      expect(status!.pending).to.deep.equal(UP);
    });
  });
});
