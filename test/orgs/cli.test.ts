/** bin/tenant as an operator runs it: a child process against the real MariaDB and Redis of this run. */
import { expect } from 'chai';
import type { Sequelize } from 'sequelize';
import type { Deps } from '../../src/deps.js';
import {
  RUN,
  cli,
  createTenant,
  eventually,
  rootDb,
  rows,
  startApi,
  testDeps,
  uniqueName,
  type CliResult,
  type TestApi,
} from '../helpers.js';

/** This run's shared (control-plane) database. */
const SHARED = `${RUN}_shared`;
/** A timestamp as JSON prints a Date. */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Exit 0, with stderr in the failure message. */
function expectOk(r: CliResult): void {
  expect(r.code, `exit code; stderr: ${r.stderr}`).to.equal(0);
}

/** A refusal: the exit code, and one `error: ...` line on stderr that names `mentions` (an error code or a hint). */
function expectRefused(r: CliResult, code: 1 | 2, mentions?: string): void {
  expect(r.code, `exit code; stdout: ${r.stdout} stderr: ${r.stderr}`).to.equal(code);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, 'stderr lines').to.have.length(1);
  expect(lines[0]).to.match(/^error: /);
  if (mentions) expect(lines[0]).to.include(mentions);
}

describe('bin/tenant (CLI)', () => {
  let deps: Deps;
  let root: Sequelize;
  /** An ACTIVE tenant created through the service, for commands that only read. */
  let fixture: { id: number; apiKey: string; dbName: string; name: string };

  const schemaExists = async (db: string) =>
    (await rows(root, 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :db', { db })).length === 1;
  const tableExists = async (db: string, table: string) =>
    (await rows(root, 'SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db AND TABLE_NAME = :table', { db, table }))
      .length === 1;
  const orgRow = async (id: number) =>
    (
      await rows<{ name: string; status: string; credit_balance: number; db_server_id: number; db_name: string; db_user: string }>(
        root,
        `SELECT * FROM \`${SHARED}\`.orgs WHERE id = :id`,
        { id },
      )
    )[0];
  const orgsNamed = async (name: string) => (await rows(root, `SELECT id FROM \`${SHARED}\`.orgs WHERE name = :name`, { name })).length;
  const ledgerSum = async (id: number) =>
    Number(
      (
        await rows<{ total: number }>(
          root,
          `SELECT COALESCE(SUM(amount), 0) AS total FROM \`${SHARED}\`.credit_ledger WHERE org_id = :id`,
          { id },
        )
      )[0]!.total,
    );

  before(async () => {
    deps = testDeps({}, { subscribe: false });
    root = rootDb();
    const name = uniqueName('cli fixture');
    fixture = { ...(await createTenant(deps, { name, credits: 10 })), name };
  });
  after(async () => {
    await deps?.close();
    await root?.close();
  });

  describe('create', () => {
    it('create <name> --credits N --json prints the org and a one-time API key, and the tenant database exists with its messages table', async () => {
      const name = uniqueName('cli create');
      const r = await cli(['create', name, '--credits', '42', '--json']);
      expectOk(r);
      expect(r.json.org).to.have.all.keys('id', 'name', 'status', 'creditBalance', 'createdAt', 'updatedAt');
      expect(r.json.org).to.include({ name, status: 'ACTIVE', creditBalance: 42 });
      expect(r.json.org.id).to.be.a('number').above(0);
      expect(r.json.org.createdAt).to.be.a('string').that.matches(ISO_DATE);
      expect(r.json.org.updatedAt).to.be.a('string').that.matches(ISO_DATE);
      expect(r.json.apiKey).to.be.a('string').with.length.above(20);

      const org = await orgRow(r.json.org.id);
      expect(org).to.include({ status: 'ACTIVE', db_name: `${RUN}_${r.json.org.id}` });
      expect(Number(org!.credit_balance)).to.equal(42);
      expect(await schemaExists(org!.db_name), 'tenant database').to.equal(true);
      expect(await tableExists(org!.db_name, 'messages'), 'messages table').to.equal(true);
    });

    it('a duplicate name exits 1 with ORG_NAME_TAKEN on stderr and creates no second org', async () => {
      expectRefused(await cli(['create', fixture.name, '--json']), 1, 'ORG_NAME_TAKEN');
      expect(await orgsNamed(fixture.name)).to.equal(1);
    });

    it('an empty name or a name with a control character is a usage error (exit 2) and creates nothing', async () => {
      expectRefused(await cli(['create', '', '--json']), 2, 'usage: create');
      expect(await orgsNamed('')).to.equal(0);
      const bad = `bad\u0001${uniqueName('ctl')}`;
      expectRefused(await cli(['create', bad, '--json']), 2, 'control characters');
      expect(await orgsNamed(bad)).to.equal(0);
    });
  });

  describe('list and show', () => {
    it('list --json lists the org with its status and balance, and never a key hash or password', async () => {
      const r = await cli(['list', '--json']);
      expectOk(r);
      const mine = (r.json.orgs as { id: number }[]).find((o) => o.id === fixture.id);
      expect(mine).to.include({ id: fixture.id, name: fixture.name, status: 'ACTIVE', creditBalance: 10, dbName: fixture.dbName });
      for (const secret of ['key_hash', 'keyHash', 'password', 'Password']) expect(r.stdout).to.not.include(secret);
    });

    it('show <id> --json shows the org and its keys, without the key hash, the key itself or any password', async () => {
      const r = await cli(['show', String(fixture.id), '--json']);
      expectOk(r);
      expect(r.json.org).to.include({ id: fixture.id, name: fixture.name, status: 'ACTIVE', creditBalance: 10, dbName: fixture.dbName });
      expect(r.json.keys).to.have.length(1);
      expect(r.json.keys[0]).to.include({ name: 'default', revokedAt: null });
      expect(fixture.apiKey).to.include(r.json.keys[0].prefix);
      for (const secret of ['key_hash', 'keyHash', 'password', 'Password', fixture.apiKey]) expect(r.stdout).to.not.include(secret);
    });

    it('show of an unknown id exits 1 with ORG_NOT_FOUND', async () => {
      expectRefused(await cli(['show', '999999', '--json']), 1, 'ORG_NOT_FOUND');
    });
  });

  describe('suspend and resume', () => {
    let t: { id: number };
    before(async () => {
      t = await createTenant(deps);
    });

    it('suspend makes the org SUSPENDED and resume makes it ACTIVE again, as show --json reports', async () => {
      const status = async () => {
        const r = await cli(['show', String(t.id), '--json']);
        expectOk(r);
        return r.json.org.status as string;
      };
      const s = await cli(['suspend', String(t.id), '--json']);
      expectOk(s);
      expect(s.json.org.status).to.equal('SUSPENDED');
      expect(await status()).to.equal('SUSPENDED');
      const a = await cli(['resume', String(t.id), '--json']);
      expectOk(a);
      expect(a.json.org.status).to.equal('ACTIVE');
      expect(await status()).to.equal('ACTIVE');
    });
  });

  describe('credits', () => {
    let t: { id: number };
    before(async () => {
      t = await createTenant(deps, { credits: 100 });
    });

    const balance = async () => Number((await orgRow(t.id))!.credit_balance);

    it('credits <id> 50 grants, and -5 as well as -- -5 adjust down, each with a ledger row', async () => {
      const grant = await cli(['credits', String(t.id), '50', '--json']);
      expectOk(grant);
      expect(grant.json.entry).to.include({ kind: 'grant', amount: 50, balanceAfter: 150 });
      expect(grant.json.org.creditBalance).to.equal(150);

      const adjust = await cli(['credits', String(t.id), '-5', '--json']);
      expectOk(adjust);
      expect(adjust.json.entry).to.include({ kind: 'adjustment', amount: -5, balanceAfter: 145 });

      const dashed = await cli(['credits', String(t.id), '--json', '--', '-5']);
      expectOk(dashed);
      expect(dashed.json.entry).to.include({ kind: 'adjustment', amount: -5, balanceAfter: 140 });

      expect(await balance()).to.equal(140);
      expect(await ledgerSum(t.id)).to.equal(140);
    });

    it('an adjustment below zero exits 1 with INSUFFICIENT_BALANCE and leaves the balance and ledger unchanged', async () => {
      const before = await balance();
      expectRefused(await cli(['credits', String(t.id), '-100000', '--json']), 1, 'INSUFFICIENT_BALANCE');
      expect(await balance()).to.equal(before);
      expect(await ledgerSum(t.id)).to.equal(before);
    });

    it('credits <id> 0 and credits <id> abc are usage errors (exit 2) and change nothing', async () => {
      const before = await balance();
      expectRefused(await cli(['credits', String(t.id), '0', '--json']), 2);
      expectRefused(await cli(['credits', String(t.id), 'abc', '--json']), 2);
      expect(await balance()).to.equal(before);
      expect(await ledgerSum(t.id)).to.equal(before);
    });
  });

  describe('drop', () => {
    let t: { id: number; dbName: string };
    before(async () => {
      t = await createTenant(deps);
    });

    it('drop without --force is refused with exit 2 and the database survives', async () => {
      expectRefused(await cli(['drop', String(t.id), '--json']), 2, '--force');
      expect(await schemaExists(t.dbName)).to.equal(true);
      expect((await orgRow(t.id))!.status).to.equal('ACTIVE');
    });

    it('drop --force locks the MySQL user and keeps the database for the retention period, and the org becomes DELETED', async () => {
      const { db_user: user } = (await orgRow(t.id))!;
      expect(await rows(root, 'SELECT User FROM mysql.user WHERE User = :user', { user })).to.have.length(1);

      const r = await cli(['drop', String(t.id), '--force', '--json']);
      expectOk(r);
      expect(r.json.org).to.include({ id: t.id, status: 'DELETED' });
      expect(r.json.org.droppedAt).to.be.a('string');
      expect(await schemaExists(t.dbName), 'tenant database').to.equal(true);
      const locked = await rows(root, "SELECT JSON_VALUE(Priv, '$.account_locked') AS locked FROM mysql.global_priv WHERE User = :user", {
        user,
      });
      expect(
        locked.map((l) => String(l.locked)),
        'tenant MySQL user locked',
      ).to.deep.equal(['1']);
      expect((await orgRow(t.id))!.status).to.equal('DELETED');
    });
  });

  describe('keys', () => {
    let t: { id: number };
    let api: TestApi;
    before(async () => {
      t = await createTenant(deps);
      api = await startApi();
    });
    after(async () => api?.stop());

    it('keys create, list and revoke: the new key works against the API until it is revoked, and a second revoke exits 1 with KEY_NOT_FOUND', async () => {
      const created = await cli(['keys', 'create', String(t.id), '--name', 'ci', '--json']);
      expectOk(created);
      expect(created.json).to.include({ name: 'ci' });
      const { apiKey, prefix } = created.json as { apiKey: string; prefix: string };
      expect(apiKey).to.include(prefix);
      const me = () => api.request('GET', '/org', { org: { id: t.id, apiKey } });
      expect((await me()).status, 'the new key authenticates').to.equal(200);

      const listed = await cli(['keys', 'list', String(t.id)]);
      expectOk(listed);
      expect(listed.stdout).to.include(prefix);
      expect(listed.stdout).to.not.include(apiKey);

      const revoked = await cli(['keys', 'revoke', String(t.id), prefix, '--json']);
      expectOk(revoked);
      expect(revoked.json).to.deep.equal({ revoked: prefix });

      const after = await cli(['keys', 'list', String(t.id), '--json']);
      expectOk(after);
      for (const secret of ['key_hash', 'keyHash', apiKey]) expect(after.stdout).to.not.include(secret);
      const ci = (after.json.keys as { prefix: string; name: string; revokedAt: string | null }[]).find((k) => k.prefix === prefix);
      expect(ci).to.include({ name: 'ci' });
      expect(ci!.revokedAt, 'revokedAt').to.be.a('string').that.matches(ISO_DATE);
      expect(
        (after.json.keys as { name: string; revokedAt: string | null }[]).find((k) => k.name === 'default')?.revokedAt,
        'the default key stays',
      ).to.equal(null);

      expect(await eventually(async () => (await me()).status === 401), 'the revoked key is refused by the API').to.equal(true);

      expectRefused(await cli(['keys', 'revoke', String(t.id), prefix, '--json']), 1, 'KEY_NOT_FOUND');
    });
  });

  describe('servers', () => {
    // extra1 is the same MariaDB: once this story is told, keep the run's later tenants on `default`.
    after(async () => root.query(`UPDATE \`${SHARED}\`.db_servers SET status = 'draining' WHERE name = 'extra1'`));

    it('servers list --json includes the default server from the config, without its password', async () => {
      const r = await cli(['servers', 'list', '--json']);
      expectOk(r);
      const def = (r.json.servers as { name: string }[]).find((s) => s.name === 'default');
      expect(def).to.include({ name: 'default', host: '127.0.0.1', port: 3306, adminUser: 'root', status: 'active' });
      for (const secret of ['password', 'Password', 'admin_password_enc']) expect(r.stdout).to.not.include(secret);
    });

    it('servers add of the default server under another name (same MySQL server) exits 1 SERVER_DUPLICATE; an unreachable one is registered with a warning, the same name again exits 1 SERVER_EXISTS; create --server places a tenant', async () => {
      const env = { SOME_VAR: '' };
      const add = (name: string, host: string, port: string) =>
        cli(['servers', 'add', name, '--host', host, '--port', port, '--user', 'root', '--password-env', 'SOME_VAR', '--json'], env);
      expectRefused(await add('extra1', '127.0.0.1', '3306'), 1, 'SERVER_DUPLICATE');
      expect(await rows(root, `SELECT id FROM \`${SHARED}\`.db_servers WHERE name = 'extra1'`)).to.have.length(0);

      // Nothing listens on port 1: registered without an identity (read again before any move), and drained at once.
      const added = await add('extra2', '127.0.0.1', '1');
      expectOk(added);
      expect(added.json.server).to.include({
        name: 'extra2',
        host: '127.0.0.1',
        port: 1,
        adminUser: 'root',
        status: 'active',
        serverUid: null,
      });
      await deps.servers.setStatus('extra2', 'draining');
      expectRefused(await add('extra2', '127.0.0.1', '1'), 1, 'SERVER_EXISTS');

      const created = await cli(['create', uniqueName('x'), '--server', 'default', '--json']);
      expectOk(created);
      expect(created.json.org.status).to.equal('ACTIVE');
      const org = (await orgRow(created.json.org.id))!;
      expect(Number(org.db_server_id)).to.equal((await deps.servers.list()).find((s) => s.name === 'default')!.id);
      expect(await tableExists(org.db_name, 'messages')).to.equal(true);
    });
  });

  describe('usage', () => {
    it('an unknown command exits 2 with a one-line reason', async () => {
      expectRefused(await cli(['frobnicate', '--json']), 2, 'unknown command');
    });

    it('<command> --help shows its usage and examples, before any connection (the database here does not even answer)', async () => {
      const down = { DB_PORT: '1', REDIS_URL: 'redis://127.0.0.1:1' };
      for (const command of ['create', 'migrate', 'rollback', 'keys', 'servers']) {
        const r = await cli([command, '--help'], down);
        expectOk(r);
        expect(r.stdout).to.match(new RegExp(`^usage: bin/tenant ${command}`));
        expect(r.stdout).to.include('examples:');
      }
      const viaHelp = await cli(['help', 'credits'], down);
      expectOk(viaHelp);
      expect(viaHelp.stdout).to.include('bin/tenant credits 7 -- -5');
    });

    it('rollback of every tenant needs --force: without it (or --tenant) exit 2 and nothing is rolled back', async () => {
      const r = await cli(['rollback', '--json']);
      expectRefused(r, 2, '--force');
      expect(JSON.parse(r.stdout)).to.deep.equal({
        error: { code: 'USAGE', message: 'rollback of every tenant needs --force (or name them with --tenant ID)' },
      });
    });

    it('under --json a failure is JSON on stdout too ({error: {code, message}}), besides the one-line reason on stderr', async () => {
      const r = await cli(['show', '999999', '--json']);
      expectRefused(r, 1, 'ORG_NOT_FOUND');
      expect(JSON.parse(r.stdout).error).to.deep.equal({ code: 'ORG_NOT_FOUND', message: 'org 999999 does not exist' });
    });

    it('read-only commands never migrate: list against a shared DB that does not exist fails and creates nothing', async () => {
      const missing = `${RUN}_nosuch`;
      const r = await cli(['list', '--json'], { DB_NAME: missing });
      expectRefused(r, 1, 'migrate --shared-only');
      const [found] = await rows<{ n: number }>(
        root,
        'SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :missing',
        { missing },
      );
      expect(Number(found!.n)).to.equal(0);
    });

    it('--help exits 0 and lists every command', async () => {
      const r = await cli(['--help']);
      expectOk(r);
      for (const command of [
        'create',
        'list',
        'show',
        'migrate',
        'status',
        'rollback',
        'provision',
        'suspend',
        'resume',
        'drop',
        'credits',
        'keys',
        'servers',
      ]) {
        expect(r.stdout).to.match(new RegExp(`^\\s+(.*\\| )?${command}\\b`, 'm'), command);
      }
    });
  });
});
