/**
 * Tenant isolation enforced by MySQL itself: connected as tenant A's own user, nothing of tenant B or of the
 * shared DB can be read or changed, and A cannot change its schema.
 */
import { expect } from 'chai';
import { createConnection, type Connection } from 'mysql2/promise';
import type { Sequelize } from 'sequelize';
import type { Deps } from '../../src/deps.js';
import { createSecretBox } from '../../src/platform/lib/secrets.js';
import { quoteIdentifier } from '../../src/platform/db/identifiers.js';
import { RUN, rootDb, rows, TEST_ENV, testDeps, uniqueName } from '../helpers.js';

const SHARED = `${RUN}_shared`;
const box = createSecretBox(TEST_ENV.SECRET_KEY!);
const DENIED = ['ER_TABLEACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR'];
/** A refused login: MySQL and MariaDB answer a wrong or empty password with either code, depending on version. */
const LOGIN_DENIED = ['ER_ACCESS_DENIED_ERROR', 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR'];

interface Tenant {
  id: number;
  dbName: string;
  dbUser: string;
  password: string;
}

/** The MySQL error code a promise rejects with (fails the test when it resolves). */
async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (!code) throw err;
    return code;
  }
  throw new Error('expected MySQL to refuse, but the statement succeeded');
}

const connectAs = (user: string, password: string, database?: string): Promise<Connection> =>
  createConnection({ host: '127.0.0.1', port: 3306, user, password, database, connectTimeout: 3000 });

describe('tenant isolation (enforced by MySQL grants)', function () {
  this.timeout(30_000);

  let deps: Deps;
  let root: Sequelize;
  let a: Tenant;
  let b: Tenant;
  let asA: Connection;

  /** Creates a tenant on the default server and reads its credentials back from the shared DB, as an operator would. */
  async function tenant(): Promise<Tenant> {
    const { org } = await deps.orgs.create({ name: uniqueName('iso'), credits: 5, server: 'default' });
    const [r] = await rows<{ db_name: string; db_user: string; db_password_enc: string }>(
      root,
      `SELECT db_name, db_user, db_password_enc FROM \`${SHARED}\`.orgs WHERE id = :id`,
      { id: org.id },
    );
    return { id: org.id, dbName: r!.db_name, dbUser: r!.db_user, password: box.decrypt(r!.db_password_enc) };
  }

  before(async () => {
    deps = testDeps({}, { subscribe: false });
    root = rootDb();
    a = await tenant();
    b = await tenant();
    expect(a.dbUser).to.not.equal(b.dbUser);
    expect(a.password).to.not.equal(b.password);
    // B has data worth stealing.
    await root.query(
      `INSERT INTO ${quoteIdentifier(b.dbName)}.messages (\`to\`, channel, body, cost) VALUES ('+15550000001', 'sms', 'B secret', 1)`,
    );
    asA = await connectAs(a.dbUser, a.password, a.dbName);
  });

  after(async () => {
    await asA?.end().catch(() => undefined);
    await deps?.close();
    await root?.close();
  });

  it("A's user cannot read or write B's messages", async () => {
    expect(DENIED).to.include(await errorCode(asA.query(`SELECT * FROM ${quoteIdentifier(b.dbName)}.messages`)));
    expect(DENIED).to.include(
      await errorCode(
        asA.query(`INSERT INTO ${quoteIdentifier(b.dbName)}.messages (\`to\`, channel, body, cost) VALUES ('x', 'sms', 'y', 1)`),
      ),
    );
    expect(DENIED).to.include(await errorCode(asA.query(`DELETE FROM ${quoteIdentifier(b.dbName)}.messages`)));
    const [left] = await rows<{ n: number }>(root, `SELECT COUNT(*) AS n FROM ${quoteIdentifier(b.dbName)}.messages`);
    expect(Number(left!.n)).to.equal(1);
  });

  it("A's user cannot USE B's database", async () => {
    expect(await errorCode(asA.query(`USE ${quoteIdentifier(b.dbName)}`))).to.equal('ER_DBACCESS_DENIED_ERROR');
    expect(await errorCode(connectAs(a.dbUser, a.password, b.dbName))).to.equal('ER_DBACCESS_DENIED_ERROR');
  });

  it("SHOW DATABASES lists A's database, not B's nor the shared one", async () => {
    const [list] = await asA.query('SHOW DATABASES');
    const names = (list as Record<string, string>[]).map((r) => Object.values(r)[0]);
    expect(names).to.include(a.dbName);
    expect(names).to.not.include(b.dbName);
    expect(names).to.not.include(SHARED);
  });

  it("A's user cannot read the shared (control-plane) DB", async () => {
    for (const table of ['orgs', 'api_keys', 'credit_ledger', 'db_servers']) {
      expect(DENIED, table).to.include(await errorCode(asA.query(`SELECT * FROM \`${SHARED}\`.${table}`)));
    }
    expect(DENIED).to.include(await errorCode(asA.query(`UPDATE \`${SHARED}\`.orgs SET credit_balance = 1000000`)));
  });

  it("A's user has no DDL privileges, even in its own database", async () => {
    expect(DENIED).to.include(await errorCode(asA.query('CREATE TABLE x (id int)')));
    expect(DENIED).to.include(await errorCode(asA.query('DROP TABLE messages')));
    expect(DENIED).to.include(await errorCode(asA.query('ALTER TABLE messages ADD COLUMN x int')));
    expect(DENIED).to.include(await errorCode(asA.query('TRUNCATE TABLE messages')));
    expect(DENIED).to.include(await errorCode(asA.query(`DROP DATABASE ${quoteIdentifier(a.dbName)}`)));
    expect(DENIED).to.include(await errorCode(asA.query(`CREATE DATABASE \`${RUN}_evil\``)));
  });

  it("A's user can INSERT, SELECT, UPDATE and DELETE its own messages", async () => {
    const [ins] = await asA.query("INSERT INTO messages (`to`, channel, body, cost) VALUES ('+15550000002', 'sms', 'A hello', 1)");
    const id = (ins as { insertId: number }).insertId;
    expect(id).to.be.greaterThan(0);
    await asA.query("UPDATE messages SET status = 'SENT' WHERE id = ?", [id]);
    const [sel] = await asA.query('SELECT body, status FROM messages WHERE id = ?', [id]);
    expect(sel).to.deep.equal([{ body: 'A hello', status: 'SENT' }]);
    await asA.query('DELETE FROM messages WHERE id = ?', [id]);
    const [none] = await asA.query('SELECT COUNT(*) AS n FROM messages WHERE id = ?', [id]);
    expect(Number((none as { n: number }[])[0]!.n)).to.equal(0);
  });

  it("A's grant covers its own database only, not another database its name matches as a LIKE pattern ('_' wildcard)", async () => {
    // The grant is on `<RUN>_<id>`; in a GRANT an unescaped `_` matches any character, so `<RUN>z<id>` would match.
    expect(a.dbName).to.equal(`${RUN}_${a.id}`);
    const lookalike = `${RUN}z${a.id}`;
    await root.query(`CREATE DATABASE ${quoteIdentifier(lookalike)}`);
    try {
      await root.query(`CREATE TABLE ${quoteIdentifier(lookalike)}.secrets (v varchar(20))`);
      await root.query(`INSERT INTO ${quoteIdentifier(lookalike)}.secrets VALUES ('not for A')`);
      expect(DENIED).to.include(await errorCode(asA.query(`SELECT * FROM ${quoteIdentifier(lookalike)}.secrets`)));
      expect(DENIED).to.include(await errorCode(asA.query(`INSERT INTO ${quoteIdentifier(lookalike)}.secrets VALUES ('A was here')`)));
    } finally {
      await root.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(lookalike)}`);
    }
  });

  it("A's user cannot log in with B's password (nor B's with A's, nor without one)", async () => {
    expect(LOGIN_DENIED).to.include(await errorCode(connectAs(a.dbUser, b.password)));
    expect(LOGIN_DENIED).to.include(await errorCode(connectAs(b.dbUser, a.password)));
    expect(LOGIN_DENIED).to.include(await errorCode(connectAs(a.dbUser, '')));
  });

  it("after B is dropped, B's user is locked (its database kept for the retention period); after B is purged, B's database and MySQL user are gone; A still works", async () => {
    const dropped = await deps.orgs.drop(b.id);
    expect(dropped.status).to.equal('DELETED');
    // MariaDB: "Access denied, this account is locked" (errno 4151, which mysql2 names after another error).
    const locked = (await connectAs(b.dbUser, b.password).then(
      () => undefined,
      (err: { errno?: number }) => err,
    )) as { errno?: number; message: string } | undefined;
    expect(locked?.message).to.match(/locked/);
    expect(
      await rows(root, 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :db', { db: b.dbName }),
    ).to.have.length(1);
    await deps.orgs.purge(b.id);
    expect(await rows(root, 'SELECT User FROM mysql.user WHERE User = :user', { user: b.dbUser })).to.have.length(0);
    expect(
      await rows(root, 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :db', { db: b.dbName }),
    ).to.have.length(0);
    expect(LOGIN_DENIED).to.include(await errorCode(connectAs(b.dbUser, b.password)));
    const [r] = await asA.query('SELECT COUNT(*) AS n FROM messages');
    expect(Number((r as { n: number }[])[0]!.n)).to.equal(0);
  });
});

describe('a database that already exists under the name a new org would get', () => {
  it('is never adopted: provisioning stops at CREATE_DATABASE with TENANT_DB_EXISTS, and neither it nor drop touches that data', async function () {
    this.timeout(60_000);
    const [run, root, select, makeDeps, name] = [RUN, rootDb, rows, testDeps, uniqueName];
    const deps = makeDeps({}, { subscribe: false });
    const admin = root();
    try {
      // Another deployment's tenant (same prefix on the same server, or an org id repeated after a restore).
      const [{ next }] = (await select<{ next: number }>(
        admin,
        "SELECT AUTO_INCREMENT AS next FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db AND TABLE_NAME = 'orgs'",
        { db: `${run}_shared` },
      )) as [{ next: number }];
      const foreign = `${run}_${next}`;
      await admin.query(`CREATE DATABASE \`${foreign}\``);
      await admin.query(`CREATE TABLE \`${foreign}\`.messages (id INT PRIMARY KEY, body TEXT)`);
      await admin.query(`INSERT INTO \`${foreign}\`.messages VALUES (1, 'someone else''s secret')`);

      const err = (await deps.orgs.create({ name: name('late'), credits: 1, server: 'default' }).catch((e: unknown) => e)) as {
        code: string;
        details: { orgId: number; step: string };
      };
      expect(err.code).to.equal('PROVISIONING_FAILED');
      expect(err.details.step).to.equal('CREATE_DATABASE');
      const org = (await deps.repo.get(err.details.orgId))!;
      expect(org.dbName).to.equal(foreign);
      expect(org.lastError).to.contain('TENANT_DB_EXISTS');
      await deps.orgs.drop(org.id);
      const [row] = await select<{ body: string }>(admin, `SELECT body FROM \`${foreign}\`.messages`);
      expect(row?.body).to.equal("someone else's secret");
    } finally {
      await deps.close();
      await admin.close();
    }
  });
});
