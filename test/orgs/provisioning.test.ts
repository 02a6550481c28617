/**
 * Provisioning as a resumable state machine: a crash at any step leaves the org FAILED with the step and the error,
 * and `bin/tenant provision <id>` (another process) resumes it to exactly the state a clean run reaches.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { createConnection } from 'mysql2/promise';
import type { Sequelize } from 'sequelize';
import { TENANT_MIGRATIONS_DIR } from '../../src/platform/db/migrator.js';
import type { Deps } from '../../src/deps.js';
import { AppError } from '../../src/platform/lib/errors.js';
import { API_KEY_PATTERN, createSecretBox, sha256 } from '../../src/platform/lib/secrets.js';
import { assertIdentifier, quoteIdentifier } from '../../src/platform/db/identifiers.js';
import { tenantDbName, tenantDbUser } from '../../src/orgs/domain/tenant-names.js';
import { PROVISIONING_STEPS, type ProvisioningStep } from '../../src/orgs/domain/provisioner.js';
import { cli, RUN, rootDb, rows, TEST_ENV, testDeps, uniqueName, rejection } from '../helpers.js';

const SHARED = `${RUN}_shared`;
const box = createSecretBox(TEST_ENV.SECRET_KEY!);
/** Every tenant migration, by name (extension dropped, as the migrator records them). */
const TENANT_MIGRATIONS = readdirSync(TENANT_MIGRATIONS_DIR)
  .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts'))
  .map((f) => path.basename(f, path.extname(f)))
  .sort();

interface OrgRow {
  id: number;
  name: string;
  status: string;
  credit_balance: number;
  db_name: string;
  db_user: string;
  db_password_enc: string;
  provisioning_step: string | null;
  last_error: string | null;
}

/**
 * A regex source for a database name as SHOW GRANTS prints an exact grant: `_` escaped as `\_` (an unescaped `_` in a
 * GRANT is a wildcard, so `tenant_1` would also cover `tenantX1`).
 */
const grantDbPattern = (db: string) => db.replace(/_/g, '\\\\_');

describe('tenant provisioning', function () {
  this.timeout(60_000);

  let root: Sequelize;
  let plain: Deps;
  const opened: Deps[] = [];

  before(() => {
    root = rootDb();
    plain = testDeps({}, { subscribe: false });
  });
  after(async () => {
    await Promise.allSettled(opened.map((d) => d.close()));
    await plain.close();
    await root.close();
  });

  /** Deps whose provisioner crashes just before `target`. */
  function crashingAt(target: ProvisioningStep): Deps {
    const deps = testDeps(
      {},
      {
        subscribe: false,
        beforeProvisioningStep: (step) => {
          if (step === target) throw new Error(`simulated crash at ${step}`);
        },
      },
    );
    opened.push(deps);
    return deps;
  }

  async function orgRow(id: number): Promise<OrgRow> {
    const [r] = await rows<OrgRow>(root, `SELECT * FROM \`${SHARED}\`.orgs WHERE id = :id`, { id });
    if (!r) throw new Error(`org ${id} not found`);
    return r;
  }

  async function orgByName(name: string): Promise<OrgRow> {
    const [r] = await rows<OrgRow>(root, `SELECT * FROM \`${SHARED}\`.orgs WHERE name = :name`, { name });
    if (!r) throw new Error(`org ${name} not found`);
    return r;
  }

  async function activeKeys(id: number): Promise<{ prefix: string; key_hash: string }[]> {
    return rows(root, `SELECT prefix, key_hash FROM \`${SHARED}\`.api_keys WHERE org_id = :id AND revoked_at IS NULL`, { id });
  }

  async function grantsOf(user: string): Promise<string[]> {
    const r = await rows<Record<string, string>>(root, `SHOW GRANTS FOR ${root.escape(user)}@'%'`);
    return r.map((g) => Object.values(g)[0]!);
  }

  async function userExists(user: string): Promise<boolean> {
    return (await rows(root, `SELECT User FROM mysql.user WHERE User = :user AND Host = '%'`, { user })).length === 1;
  }

  async function dbExists(db: string): Promise<boolean> {
    return (await rows(root, 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :db', { db })).length === 1;
  }

  /** Runs `create` with a crash before `target`; checks the error and the FAILED row; returns the org id. */
  async function createFailingAt(target: ProvisioningStep, credits = 10): Promise<number> {
    const deps = crashingAt(target);
    const name = uniqueName('prov');
    // Pinned to the default server: other suites may register servers that do not answer.
    const err = await rejection(deps.orgs.create({ name, credits, server: 'default' }));
    expect(err).to.be.instanceOf(AppError);
    const e = err as AppError;
    expect(e.code).to.equal('PROVISIONING_FAILED');
    expect(e.status).to.equal(500);
    expect(e.details).to.deep.include({ step: target });
    const org = await orgByName(name);
    expect((e.details as { orgId: number }).orgId).to.equal(Number(org.id));
    expect(org.status).to.equal('FAILED');
    expect(org.provisioning_step).to.equal(target);
    expect(org.last_error).to.be.a('string').and.include(target).and.include('simulated crash');
    return Number(org.id);
  }

  /** Everything a fully provisioned org must have. */
  async function expectProvisioned(id: number, credits = 10): Promise<void> {
    const org = await orgRow(id);
    expect(org.status).to.equal('ACTIVE');
    expect(org.provisioning_step).to.equal(null);
    expect(org.last_error).to.equal(null);

    // The tenant DB exists, migrated.
    expect(await dbExists(org.db_name), `database ${org.db_name}`).to.equal(true);
    const tables = await rows<{ name: string }>(root, 'SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db', {
      db: org.db_name,
    });
    expect(tables.map((t) => t.name)).to.include('messages');
    const applied = await rows<{ name: string }>(root, `SELECT name FROM ${quoteIdentifier(org.db_name)}.schema_migrations`);
    expect(applied.map((m) => m.name).sort()).to.deep.equal(TENANT_MIGRATIONS);

    // Its own user: data privileges on its own database, nothing else.
    expect(await userExists(org.db_user), `user ${org.db_user}`).to.equal(true);
    const grants = await grantsOf(org.db_user);
    expect(grants, grants.join('\n')).to.have.length(2);
    expect(
      grants.filter((g) => /^GRANT USAGE ON \*\.\* TO /.test(g)),
      grants.join('\n'),
    ).to.have.length(1);
    const own = new RegExp(
      `^GRANT SELECT, INSERT, UPDATE, DELETE ON \`${grantDbPattern(org.db_name)}\`\\.\\* TO \`${org.db_user}\`@\`%\`$`,
    );
    expect(
      grants.filter((g) => own.test(g)),
      grants.join('\n'),
    ).to.have.length(1);

    // The stored password logs in.
    const conn = await createConnection({
      host: '127.0.0.1',
      port: 3306,
      user: org.db_user,
      password: box.decrypt(org.db_password_enc),
      database: org.db_name,
    });
    try {
      const [r] = await conn.query('SELECT COUNT(*) AS n FROM messages');
      expect((r as { n: number }[])[0]!.n).to.equal(0);
    } finally {
      await conn.end();
    }

    // Credits granted exactly once.
    expect(Number(org.credit_balance)).to.equal(credits);
    const ledger = await rows<{ reference: string; amount: number; kind: string }>(
      root,
      `SELECT reference, amount, kind FROM \`${SHARED}\`.credit_ledger WHERE org_id = :id`,
      { id },
    );
    expect(ledger.map((l) => ({ ...l, amount: Number(l.amount) }))).to.deep.equal([
      { reference: 'initial-grant', amount: credits, kind: 'grant' },
    ]);

    // Exactly one first key.
    expect(await activeKeys(id)).to.have.length(1);
  }

  /** `bin/tenant provision <id> --json`, which must succeed. */
  async function provisionCli(id: number) {
    const r = await cli(['provision', String(id), '--json']);
    expect(r.code, `exit code; stderr: ${r.stderr}`).to.equal(0);
    expect(r.json.org).to.include({ id, status: 'ACTIVE', provisioningStep: null, lastError: null });
    return r.json as { org: Record<string, unknown>; apiKey: string | null };
  }

  for (const target of PROVISIONING_STEPS) {
    it(`a crash before ${target} leaves the org FAILED at ${target}; bin/tenant provision resumes it once`, async () => {
      const id = await createFailingAt(target);
      const org = await orgRow(id);
      const before = PROVISIONING_STEPS.indexOf(target);
      // Steps before the crash did their work, the later ones did not.
      expect(await dbExists(org.db_name)).to.equal(before > 0);
      expect(await userExists(org.db_user)).to.equal(before > 1);
      expect(await activeKeys(id)).to.have.length(0);
      expect(Number(org.credit_balance)).to.equal(10);

      const first = await provisionCli(id);
      expect(first.apiKey, 'the first key is shown by the run that made it').to.be.a('string').and.match(API_KEY_PATTERN);
      const keys = await activeKeys(id);
      expect(keys).to.have.length(1);
      expect(keys[0]!.key_hash).to.equal(sha256(first.apiKey!));
      await expectProvisioned(id);

      // Provisioning an ACTIVE org again is a no-op: no new key, no second grant.
      const again = await provisionCli(id);
      expect(again.apiKey).to.equal(null);
      await expectProvisioned(id);
      expect((await activeKeys(id))[0]!.prefix).to.equal(keys[0]!.prefix);
    });
  }

  it('re-running CREATE_USER after it already ran converges (user exists, password drifted)', async () => {
    const id = await createFailingAt('MIGRATE');
    const org = await orgRow(id);
    expect(await dbExists(org.db_name)).to.equal(true);
    expect(await userExists(org.db_user)).to.equal(true);
    // The user exists already; its password no longer matches the stored one (e.g. a crash between the statements).
    await root.query(`ALTER USER ${root.escape(org.db_user)}@'%' IDENTIFIED BY 'not-the-stored-one'`);
    await root.query(`UPDATE \`${SHARED}\`.orgs SET provisioning_step = 'CREATE_USER' WHERE id = :id`, { replacements: { id } });

    const r = await provisionCli(id);
    expect(r.apiKey).to.match(API_KEY_PATTERN);
    await expectProvisioned(id);
  });

  it('re-running every step after MIGRATE already ran converges (no duplicate migration, one key, one grant)', async () => {
    const id = await createFailingAt('CREATE_API_KEY');
    await root.query(`UPDATE \`${SHARED}\`.orgs SET provisioning_step = 'CREATE_DATABASE' WHERE id = :id`, { replacements: { id } });
    const r = await provisionCli(id);
    expect(r.apiKey).to.match(API_KEY_PATTERN);
    await expectProvisioned(id);
  });

  it('an unknown provisioning_step restarts from CREATE_DATABASE and still converges', async () => {
    const id = await createFailingAt('CREATE_USER');
    await root.query(`UPDATE \`${SHARED}\`.orgs SET provisioning_step = 'BOGUS' WHERE id = :id`, { replacements: { id } });
    const r = await plain.orgs.provision(id);
    expect(r.apiKey).to.match(API_KEY_PATTERN);
    await expectProvisioned(id);
  });

  it('resuming CREATE_API_KEY when a key already exists makes no second first key', async () => {
    const id = await createFailingAt('CREATE_API_KEY');
    await plain.repo.insertKey({ orgId: id, prefix: `k${RUN}`.slice(0, 12).toLowerCase(), keyHash: sha256('x'), name: 'pre-existing' });
    const r = await plain.orgs.provision(id);
    expect(r.apiKey).to.equal(undefined);
    expect(r.org.status).to.equal('ACTIVE');
    await expectProvisioned(id);
  });

  it('two concurrent resumes of one org converge: one first key, ACTIVE, no step left behind', async () => {
    // Two operators (or a retry loop and a person) resuming the same org at once. Either both succeed, or the
    // second is refused with a 409; neither may fail the org nor leave it half-updated.
    const id = await createFailingAt('CREATE_API_KEY');
    const results = await Promise.allSettled([plain.orgs.provision(id), plain.orgs.provision(id)]);
    const outcome = results.map((r) =>
      r.status === 'fulfilled' ? 'ok' : `${(r.reason as AppError).code}: ${(r.reason as Error).message}`,
    );
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as AppError).status, JSON.stringify(outcome)).to.equal(409);
    }
    const keys = results.flatMap((r) => (r.status === 'fulfilled' && r.value.apiKey ? [r.value.apiKey] : []));
    expect(keys, JSON.stringify(outcome)).to.have.length(1);
    for (const r of results) if (r.status === 'fulfilled') expect(r.value.org.status).to.equal('ACTIVE');
    await expectProvisioned(id);
  });

  it('re-running CREATE_USER converges on the exact grants (revokes privileges a stale account had)', async () => {
    const id = await createFailingAt('MIGRATE');
    const org = await orgRow(id);
    const account = `${root.escape(org.db_user)}@'%'`;
    // An account provisioned by older code or left over with the same name: a wildcard grant (unescaped `_`), DDL
    // privileges, and access to another database. Re-running CREATE_USER must leave exactly the data privileges.
    await root.query(`GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON ${quoteIdentifier(org.db_name)}.* TO ${account}`);
    await root.query(`GRANT SELECT ON \`${SHARED}\`.* TO ${account}`);
    await root.query(`UPDATE \`${SHARED}\`.orgs SET provisioning_step = 'CREATE_USER' WHERE id = :id`, { replacements: { id } });

    await plain.orgs.provision(id);
    await expectProvisioned(id);
  });

  it('bin/tenant provision of an unknown org exits non-zero with ORG_NOT_FOUND', async () => {
    const r = await cli(['provision', '987654321', '--json']);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include('ORG_NOT_FOUND');
  });

  describe('secrets at rest', () => {
    it('stores the tenant DB password encrypted (v1 AES-GCM); it decrypts to a password that logs in', async () => {
      const { org, apiKey } = await plain.orgs.create({ name: uniqueName('secret'), credits: 1, server: 'default' });
      expect(apiKey).to.match(API_KEY_PATTERN);
      const r = await orgRow(org.id);
      expect(r.db_password_enc.startsWith('v1.')).to.equal(true);
      expect(r.db_password_enc.split('.')).to.have.length(4);
      const password = box.decrypt(r.db_password_enc);
      expect(password).to.match(/^[A-Za-z0-9_-]{43}$/);
      // The plain password is nowhere in the org row.
      expect(JSON.stringify(r)).to.not.include(password);

      const conn = await createConnection({ host: '127.0.0.1', port: 3306, user: r.db_user, password, database: r.db_name });
      try {
        const [[who]] = (await conn.query('SELECT CURRENT_USER() AS u, DATABASE() AS d')) as unknown as [[{ u: string; d: string }]];
        expect(who).to.deep.equal({ u: `${r.db_user}@%`, d: r.db_name });
      } finally {
        await conn.end();
      }

      // Another key cannot open it, and a tampered ciphertext is refused (GCM authentication).
      expect(() => createSecretBox('another-secret-key-0123456789abcdef0123').decrypt(r.db_password_enc)).to.throw();
      const [v, iv, tag, data] = r.db_password_enc.split('.') as [string, string, string, string];
      const flipped = `${data[0] === 'A' ? 'B' : 'A'}${data.slice(1)}`;
      expect(() => box.decrypt([v, iv, tag, flipped].join('.'))).to.throw();
      // Two encryptions of one value differ (random IV).
      expect(box.encrypt(password)).to.not.equal(box.encrypt(password));
    });

    it('stores every db server admin password encrypted', async () => {
      const servers = await rows<{ name: string; admin_password_enc: string }>(
        root,
        `SELECT name, admin_password_enc FROM \`${SHARED}\`.db_servers`,
      );
      expect(servers.map((s) => s.name)).to.include('default');
      for (const s of servers) {
        expect(s.admin_password_enc.startsWith('v1.'), s.name).to.equal(true);
        expect(s.admin_password_enc.split('.')).to.have.length(4);
        expect(() => box.decrypt(s.admin_password_enc)).to.not.throw();
      }
      const def = servers.find((s) => s.name === 'default')!;
      expect(box.decrypt(def.admin_password_enc)).to.equal(plain.config.db.password);
    });
  });

  describe('names', () => {
    it('generates database and user names from the prefix and the id', () => {
      expect(tenantDbName('x', 1)).to.equal('x1');
      expect(tenantDbName('tenant_', 42)).to.equal('tenant_42');
      expect(tenantDbUser('tenant_', 42)).to.equal('tenant_42');
      expect(tenantDbUser('a'.repeat(22), 4294967295)).to.have.length(32);
    });

    it('refuses ids that are not positive integers', () => {
      for (const id of [0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1]) {
        expect(() => tenantDbName('x', id), String(id)).to.throw(/invalid org id/);
        expect(() => tenantDbUser('x', id), String(id)).to.throw(/invalid org id/);
      }
    });

    it('assertIdentifier accepts plain identifiers up to 64 characters and rejects anything else', () => {
      expect(assertIdentifier('tenant_1')).to.equal('tenant_1');
      expect(assertIdentifier('a'.repeat(64))).to.equal('a'.repeat(64));
      for (const bad of ['a`b', 'a;DROP', '', 'a'.repeat(65), '1abc', '_abc', 'a b', 'a-b', 'a.b', "a'b", 'a\\b', 'tenant_1\u0000', 'ä']) {
        expect(() => assertIdentifier(bad), JSON.stringify(bad)).to.throw(/unsafe SQL identifier/);
      }
      expect(quoteIdentifier('tenant_1')).to.equal('`tenant_1`');
      expect(() => quoteIdentifier('x`; DROP DATABASE y; --')).to.throw(/unsafe SQL identifier/);
    });

    it('tenantDbUser refuses names over 32 characters (MySQL 8 limit) and unsafe prefixes', () => {
      expect(tenantDbUser('a'.repeat(31), 1)).to.have.length(32);
      expect(() => tenantDbUser('a'.repeat(31), 12)).to.throw(/unsafe MySQL user name/);
      expect(() => tenantDbUser('a'.repeat(40), 1)).to.throw(/unsafe MySQL user name/);
      expect(() => tenantDbUser("x'@'%", 1)).to.throw(/unsafe MySQL user name/);
      expect(() => tenantDbName('a'.repeat(64), 1)).to.throw(/unsafe SQL identifier/);
      expect(() => tenantDbName('x`', 1)).to.throw(/unsafe SQL identifier/);
    });
  });
});

describe('concurrent provisioning', () => {
  it('provisions more orgs at once than the shared pool has connections (the per-org lock uses its own)', async function () {
    this.timeout(60_000);
    const deps = testDeps({ DB_POOL_MAX: '2' }, { subscribe: false });
    try {
      const results = await Promise.all(
        Array.from({ length: 5 }, () => deps.orgs.create({ name: uniqueName('parallel'), credits: 1, server: 'default' })),
      );
      expect(results.map((r) => r.org.status)).to.deep.equal(Array(5).fill('ACTIVE'));
      expect(results.every((r) => typeof r.apiKey === 'string')).to.equal(true);
    } finally {
      await deps.close();
    }
  });
});
