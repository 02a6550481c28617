/**
 * Tenants share their server's physical connections (src/platform/tenant-connections/server-connections.ts): a session is switched from
 * one tenant's MySQL user to another's with COM_CHANGE_USER. These tests prove on the real server that a switched
 * session can neither read nor write the previous tenant's data, that no session state crosses a switch (variables,
 * temporary tables, transactions, locks), that a failed switch never serves anyone, and that the budget holds.
 */
import { expect } from 'chai';
import mysql from 'mysql2';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Deps } from '../../src/deps.js';
import { selectRows, write } from '../../src/platform/db/lean-query.js';
import { LeaseRevokedError } from '../../src/platform/tenant-connections/sequelize-lease.js';
import { switchUser } from '../../src/platform/tenant-connections/switch-user.js';
import type { ProvisionedOrg } from '../../src/orgs/domain/org.js';
import { RUN, cli, createTenant, eventually, provisionedOrg, rootDb, rows, startApi, testDeps, type TestApi } from '../helpers.js';

type Row = Record<string, unknown>;
const select = (db: Sequelize, sql: string) => db.query<Row>(sql, { type: QueryTypes.SELECT });
const one = async (db: Sequelize, sql: string) => (await select(db, sql))[0]!;
const mysqlCode = (err: unknown) => (err as { original?: { code?: string } }).original?.code ?? (err as { code?: string }).code;

describe('tenant connections shared across tenants (COM_CHANGE_USER multiplexing)', () => {
  let admin: Deps;
  let root: Sequelize;
  before(() => {
    admin = testDeps({}, { subscribe: false });
    root = rootDb();
  });
  after(async () => {
    await admin.close();
    await root.close();
  });

  describe('one physical connection (TENANT_CONNECTIONS_MAX=1) serving tenants A then B', () => {
    let deps: Deps;
    let a: ProvisionedOrg;
    let b: ProvisionedOrg;
    before(async function () {
      this.timeout(60_000);
      deps = testDeps({ TENANT_CONNECTIONS_MAX: '1' }, { subscribe: false });
      [a, b] = [await provisionedOrg(deps, (await createTenant(admin)).id), await provisionedOrg(deps, (await createTenant(admin)).id)];
    });
    after(async () => deps.close());
    const onA = <T>(fn: (db: Sequelize) => Promise<T>) => deps.tenantDbs.withTenant(a, (db) => fn(db.sequelize));
    const onB = <T>(fn: (db: Sequelize) => Promise<T>) => deps.tenantDbs.withTenant(b, (db) => fn(db.sequelize));

    it("after the switch the session is B's: same connection id, B's user and database, and A's tables refuse it", async () => {
      const fromA = await onA((db) => one(db, 'SELECT CONNECTION_ID() AS id, CURRENT_USER() AS user, DATABASE() AS db'));
      expect(fromA.db).to.equal(a.dbName);
      await onB(async (db) => {
        const fromB = await one(db, 'SELECT CONNECTION_ID() AS id, CURRENT_USER() AS user, DATABASE() AS db');
        expect(fromB.id, 'the same physical connection').to.equal(fromA.id);
        expect(fromB.user).to.match(new RegExp(`^${b.dbUser}@`));
        expect(fromB.db).to.equal(b.dbName);
        const read = await select(db, `SELECT * FROM \`${a.dbName}\`.messages`).catch(mysqlCode);
        expect(read).to.be.oneOf(['ER_TABLEACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR']);
        const write = await db
          .query(`INSERT INTO \`${a.dbName}\`.messages (\`to\`, channel, body, cost) VALUES ('+15550000000', 'sms', 'x', 1)`)
          .catch(mysqlCode);
        expect(write).to.be.oneOf(['ER_TABLEACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR']);
        expect(await db.query(`USE \`${a.dbName}\``).catch(mysqlCode)).to.equal('ER_DBACCESS_DENIED_ERROR');
      });
      expect((await root.query(`SELECT COUNT(*) AS n FROM \`${a.dbName}\`.messages`, { type: QueryTypes.SELECT }))[0]).to.deep.equal({
        n: 0,
      });
    });

    it('no session state crosses a switch: variables, session settings, named locks, prepared statements (temporary tables are refused)', async () => {
      const lock = `${RUN}-lock`;
      await onA(async (db) => {
        await db.query("SET @secret = 'of A', SESSION sql_mode = 'ANSI_QUOTES', SESSION time_zone = '+05:00'");
        // Least privilege: a tenant user has DML only, so it cannot even make a temporary table to leak.
        expect(await db.query('CREATE TEMPORARY TABLE a_temp (v INT)').catch(mysqlCode)).to.match(/^ER_(DB|TABLE)ACCESS_DENIED_ERROR$/);
        expect(await one(db, `SELECT GET_LOCK('${lock}', 0) AS got`)).to.deep.equal({ got: 1 });
        await db.query("PREPARE a_stmt FROM 'SELECT 1'");
      });
      await onB(async (db) => {
        const s = await one(
          db,
          `SELECT @secret AS secret, @@session.sql_mode AS mode, @@session.time_zone AS tz, IS_USED_LOCK('${lock}') AS lockOwner`,
        );
        expect(s.secret).to.equal(null);
        expect(s.mode).to.equal((await one(root, 'SELECT @@global.sql_mode AS m')).m);
        // UTC again: from the session init, or from the server's own zone when the account needs no init.
        expect(s.tz, "A's time zone does not follow the session").not.to.equal('+05:00');
        expect((await one(db, 'SELECT TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW()) AS utcOffset')).utcOffset).to.equal(0);
        expect(s.lockOwner).to.equal(null);
        expect(await db.query('EXECUTE a_stmt').catch(mysqlCode)).to.equal('ER_UNKNOWN_STMT_HANDLER');
      });
    });

    it('once the server asked for a fresh scramble, a switch carries no token in its change packet, and still authenticates (a wrong password is refused)', async () => {
      const login = (o: ProvisionedOrg, password = deps.secrets.decrypt(o.dbPasswordEnc)) => ({
        user: o.dbUser,
        password,
        database: o.dbName,
      });
      const conn = mysql.createConnection({ host: deps.config.db.host, port: deps.config.db.port, ...login(a) });
      try {
        await new Promise<void>((resolve, reject) => conn.connect((err) => (err ? reject(err) : resolve())));
        /** The token length of each COM_CHANGE_USER written: the byte after the user name's NUL. */
        const tokens: number[] = [];
        const raw = conn as unknown as { writePacket(p: { buffer: Buffer }): void };
        const writePacket = raw.writePacket.bind(raw);
        raw.writePacket = (p) => {
          if (p.buffer[4] === 0x11) tokens.push(p.buffer[p.buffer.indexOf(0, 5) + 1]!);
          writePacket(p);
        };
        const switchTo = (l: ReturnType<typeof login>) =>
          new Promise<void>((resolve, reject) => switchUser(conn, l, 45, (err) => (err ? reject(err) : resolve())));
        const whoAmI = () =>
          new Promise<unknown>((resolve, reject) =>
            conn.query('SELECT CURRENT_USER() AS user, DATABASE() AS db', (err, r) => (err ? reject(err) : resolve((r as Row[])[0]))),
          );
        await switchTo(login(b));
        expect(await whoAmI()).to.deep.equal({ user: `${b.dbUser}@%`, db: b.dbName });
        await switchTo(login(a));
        expect(await whoAmI()).to.deep.equal({ user: `${a.dbUser}@%`, db: a.dbName });
        expect(tokens, 'the first switch sends the token (a MySQL server checks it); MariaDB then asked afresh').to.deep.equal([20, 0]);
        const refused = await switchTo(login(b, 'not-the-password')).catch(mysqlCode);
        expect(refused).to.equal('ER_ACCESS_DENIED_ERROR');
        expect(tokens).to.deep.equal([20, 0, 0]);
      } finally {
        conn.destroy();
      }
    });

    it('every session has the statement timeout, new or switched', async () => {
      for (const run of [onA, onB, onA]) {
        const s = await run((db) => one(db, 'SELECT @@session.max_statement_time AS t'));
        expect(Number(s.t)).to.equal(10); // TENANT_STATEMENT_TIMEOUT_MS 10000
      }
    });

    it('a switch to an account that carries the statement limit sends no session init; an older account still gets it, until `accounts sync`', async function () {
      this.timeout(30_000);
      const c = await provisionedOrg(deps, (await createTenant(admin)).id);
      const limitOf = async (user: string) =>
        Number((await rows<{ t: number }>(root, 'SELECT max_statement_time AS t FROM mysql.user WHERE User = :user', { user }))[0]?.t);
      expect(await limitOf(c.dbUser), 'made with the limit').to.equal(10);
      await root.query(`ALTER USER '${c.dbUser}'@'%' WITH MAX_STATEMENT_TIME 0`); // as an older version made it
      const onC = <T>(fn: (db: Sequelize) => Promise<T>) => deps.tenantDbs.withTenant(c, (db) => fn(db.sequelize));
      await onA((db) => one(db, 'SELECT 1'));
      await onB((db) => one(db, 'SELECT 1')); // B's account has been read before: it needs no init
      const before = deps.tenantDbs.stats();
      for (const run of [onC, onB, onC, onB]) {
        const s = await run((db) =>
          one(db, 'SELECT @@session.max_statement_time AS t, TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW()) AS utcOffset'),
        );
        expect(s).to.deep.equal({ t: 10, utcOffset: 0 });
      }
      const after = deps.tenantDbs.stats();
      expect(after.switches - before.switches).to.equal(4);
      expect(after.sessionInits - before.sessionInits, "C's two sessions only").to.equal(2);
      expect(after.sessionInitsSkipped - before.sessionInitsSkipped, "B's two").to.equal(2);

      // The default server only: other suites register servers that are gone by now.
      const sync = await cli(['accounts', 'sync', '--server', 'default', '--json']);
      expect(sync.code, sync.stderr).to.equal(0);
      expect(sync.json.servers).to.have.length(1);
      expect((sync.json.servers as unknown[])[0]).to.deep.include({
        server: 'default',
        limits: 'WITH MAX_STATEMENT_TIME 10',
        failed: [],
        error: null,
      });
      const unknown = await cli(['accounts', 'sync', '--server', 'nope', '--json']);
      expect(unknown.code).to.equal(1);
      expect(JSON.parse(unknown.stdout)).to.deep.equal({ error: { code: 'SERVER_NOT_FOUND', message: 'no server named "nope"' } });
      expect((await cli(['accounts', 'check'])).code, 'usage').to.equal(2);
      expect(await limitOf(c.dbUser)).to.equal(10);
    });

    it("a transaction left open is rolled back before anyone gets the session, even the same tenant: A's uncommitted row is gone", async () => {
      await onA(async (db) => {
        // A buggy caller: its own lease, a transaction opened on it, and given back without COMMIT or ROLLBACK.
        const cm = db.connectionManager as unknown as { getConnection(): Promise<unknown>; releaseConnection(c: unknown): void };
        const lease = (await cm.getConnection()) as { query(o: { sql: string }, cb: (err: Error | null) => void): unknown };
        const run = (sql: string) => new Promise<void>((resolve, reject) => lease.query({ sql }, (err) => (err ? reject(err) : resolve())));
        await run('START TRANSACTION');
        await run("INSERT INTO messages (`to`, channel, body, cost) VALUES ('+15550000001', 'sms', 'uncommitted', 1)");
        cm.releaseConnection(lease);
      });
      const after = await onA((db) =>
        one(db, "SELECT @@in_transaction AS tx, (SELECT COUNT(*) FROM messages WHERE body = 'uncommitted') AS n"),
      );
      expect(after).to.deep.equal({ tx: 0, n: 0 });
    });

    it('a statement on a lease that has ended is refused, never run in the session of whoever holds the connection now', async () => {
      let stale: { query(sql: { sql: string }, cb: (err: Error | null) => void): unknown } | undefined;
      await onA(async (db) => {
        const cm = db.connectionManager as unknown as { getConnection(): Promise<typeof stale>; releaseConnection(c: unknown): void };
        stale = await cm.getConnection();
        cm.releaseConnection(stale);
      });
      const err = await onB(() => new Promise<Error | null>((resolve) => stale!.query({ sql: 'SELECT 1' }, resolve)));
      expect(err).to.be.instanceOf(LeaseRevokedError);
    });

    it('a failed switch (wrong password) answers 503 for that tenant and destroys the connection, which stayed logged in as A', async () => {
      const c = await createTenant(admin);
      const victim = await provisionedOrg(deps, c.id);
      const before = await onA((db) => one(db, 'SELECT CONNECTION_ID() AS id'));
      await root.query(`ALTER USER '${victim.dbUser}'@'%' IDENTIFIED BY 'not-the-stored-one'`);
      const err = await deps.tenantDbs.withTenant(victim, async () => 'served').catch((e: { code?: string; status?: number }) => e);
      expect(err).to.include({ status: 503, code: 'TENANT_DB_UNAVAILABLE' });
      const gone = await eventually(
        async () => (await rows(root, 'SELECT ID FROM information_schema.PROCESSLIST WHERE ID = :id', { id: before.id })).length === 0,
      );
      expect(gone, "A's session is closed after the failed COM_CHANGE_USER").to.equal(true);
      expect(await onA((db) => one(db, 'SELECT DATABASE() AS db'))).to.deep.equal({ db: a.dbName });
    });

    it("a read that leaves with the switch's last packet is answered as C; when the switch fails, neither it nor a write queued behind it is answered or run as A", async () => {
      const c = await provisionedOrg(deps, (await createTenant(admin)).id);
      const onC = <T>(fn: (db: Sequelize) => Promise<T>) => deps.tenantDbs.withTenant(c, (db) => fn(db.sequelize));
      const whoAmI = (db: Sequelize) => selectRows<Row>(db, 'SELECT DATABASE() AS db, CURRENT_USER() AS user', []);
      const countA = async () => (await rows<{ n: number }>(root, `SELECT COUNT(*) AS n FROM \`${a.dbName}\`.messages`))[0]!.n;
      await onC(whoAmI); // C's first session is checked (its account carries the statement limit): no pipelining yet
      await onA((db) => one(db, 'SELECT 1'));
      const pipelined = () => deps.tenantDbs.stats().switchesPipelined;
      const before = pipelined();
      const [asC] = await onC(whoAmI);
      expect(asC!.db).to.equal(c.dbName);
      expect(asC!.user).to.match(new RegExp(`^${c.dbUser}@`));
      expect(pipelined() - before, 'the read left with the switch').to.equal(1);

      await onA((db) => one(db, 'SELECT 1'));
      await root.query(`ALTER USER '${c.dbUser}'@'%' IDENTIFIED BY 'not-the-stored-one'`);
      // Sent with the answer to the auth switch, the read runs as A (MariaDB keeps A's session after a failed change):
      // its answer would be A's database. It is never read.
      const read = await onC(whoAmI).catch((e: unknown) => e);
      expect(read, 'no rows, an error').to.be.instanceOf(Error);
      expect(pipelined() - before).to.equal(2);

      const written = countA();
      await onA((db) => one(db, 'SELECT 1'));
      const insert = await onC((db) =>
        write(
          db,
          "INSERT INTO messages (`to`, channel, body, cost) VALUES ('+15550000001', 'sms', 'queued behind a failed switch', 1)",
          [],
        ),
      ).catch((e: unknown) => e);
      expect(insert, 'the write queued behind the failed switch fails').to.be.instanceOf(Error);
      expect(await countA(), "and never ran in A's database").to.equal(await written);
      expect(await onA((db) => one(db, 'SELECT DATABASE() AS db'))).to.deep.equal({ db: a.dbName });
    });
  });

  describe("a switch sent in one write with the holder's last statement, while another tenant waits (one connection)", () => {
    let deps: Deps;
    let a: ProvisionedOrg;
    before(async function () {
      this.timeout(60_000);
      deps = testDeps({ TENANT_CONNECTIONS_MAX: '1', TENANT_SWITCH_WAIT_MS: '0' }, { subscribe: false });
      a = await provisionedOrg(deps, (await createTenant(admin)).id);
    });
    after(async () => deps.close());
    const whoAmI = (org: ProvisionedOrg, sql = '') =>
      deps.tenantDbs.withTenant(org, (db) =>
        selectRows<Row>(db, `SELECT CONNECTION_ID() AS id, DATABASE() AS db, CURRENT_USER() AS user${sql}`, []),
      );
    const behind = () => deps.tenantDbs.stats().switchesBehind;
    /**
     * A holds the only connection (a transaction) while A's next read, then `other`'s, queue; the transaction ends: A's
     * read gets A's session back, and `other`'s switch leaves with it. Answers both, and the switches sent behind.
     */
    async function queuedBehindA<T>(other: () => Promise<T>, aSql = '') {
      let end!: () => void;
      const held = deps.tenantDbs.withTenant(a, (db) => db.sequelize.transaction(() => new Promise<void>((r) => (end = r))));
      await eventually(async () => deps.tenantDbs.stats().connectionsInUse === 1);
      const before = behind();
      const fromA = whoAmI(a, aSql);
      await eventually(async () => deps.tenantDbs.stats().connectionWaits === 1);
      const fromOther = other().then(
        (value) => ({ value }),
        (err: unknown) => ({ err }),
      );
      await eventually(async () => deps.tenantDbs.stats().connectionWaits === 2);
      end();
      await held;
      const [asA, next] = await Promise.all([
        fromA.then(
          (r) => r[0]!,
          (err: unknown) => err,
        ),
        fromOther,
      ]);
      return { asA, next, behind: behind() - before };
    }

    it("each answer is its own tenant's, on the same connection; B's session is B's alone (a new login, then a known one)", async function () {
      this.timeout(20_000);
      const b = await provisionedOrg(deps, (await createTenant(admin)).id);
      const { id } = (await whoAmI(a))[0]!;
      for (const round of ['first switch to B (its session is checked)', 'B known (answer held for its read)']) {
        const { asA, next, behind: sent } = await queuedBehindA(() => whoAmI(b));
        expect(sent, round).to.equal(1);
        expect(asA, round).to.include({ id, db: a.dbName });
        expect((asA as Row).user).to.match(new RegExp(`^${a.dbUser}@`));
        const [asB] = (next as { value: Row[] }).value;
        expect(asB, round).to.include({ id, db: b.dbName });
        expect(asB!.user).to.match(new RegExp(`^${b.dbUser}@`));
      }
      // The session switched behind A's read is B's: A's data refuses it.
      const { next } = await queuedBehindA(() =>
        deps.tenantDbs.withTenant(b, (db) => selectRows<Row>(db, `SELECT COUNT(*) AS n FROM \`${a.dbName}\`.messages`, [])),
      );
      expect(mysqlCode((next as { err: unknown }).err)).to.be.oneOf(['ER_TABLEACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR']);
      expect(deps.tenantDbs.stats().connectionsInUse).to.equal(0);
    });

    it("a switch that fails behind A's read: A's answer is still A's, the other tenant gets 503 and the connection is closed", async function () {
      this.timeout(20_000);
      const victim = await provisionedOrg(deps, (await createTenant(admin)).id);
      const { id } = (await whoAmI(a))[0]!;
      await root.query(`ALTER USER '${victim.dbUser}'@'%' IDENTIFIED BY 'not-the-stored-one'`);
      const { asA, next, behind: sent } = await queuedBehindA(() => whoAmI(victim));
      expect(sent).to.equal(1);
      expect(asA).to.include({ id, db: a.dbName });
      expect((next as { err: unknown }).err).to.include({ status: 503, code: 'TENANT_DB_UNAVAILABLE' });
      const gone = await eventually(
        async () => (await rows(root, 'SELECT ID FROM information_schema.PROCESSLIST WHERE ID = :id', { id })).length === 0,
      );
      expect(gone, 'the connection that stayed logged in as A is closed').to.equal(true);
      expect(deps.tenantDbs.stats().connectionsInUse).to.equal(0);
      expect((await whoAmI(a))[0]).to.include({ db: a.dbName });
    });

    it("the connection dies under A's read: A's read fails, the waiting tenant is served on a new connection", async function () {
      this.timeout(20_000);
      const b = await provisionedOrg(deps, (await createTenant(admin)).id);
      await whoAmI(b);
      const { id } = (await whoAmI(a))[0]!;
      const killed = queuedBehindA(() => whoAmI(b), ', SLEEP(2) AS slept');
      await eventually(
        async () =>
          (await rows(root, "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = :id AND INFO LIKE 'SELECT CONNECTION_ID()%'", { id }))
            .length > 0,
      );
      await root.query(`KILL CONNECTION ${Number(id)}`);
      const { asA, next, behind: sent } = await killed;
      expect(sent).to.equal(1);
      expect(asA).to.be.instanceOf(Error);
      const [asB] = (next as { value: Row[] }).value;
      expect(asB!.db).to.equal(b.dbName);
      expect(asB!.id).to.not.equal(id);
      expect(deps.tenantDbs.stats().connectionsInUse).to.equal(0);
    });

    it("after its last statement a lease refuses any other: nothing can follow it into the next tenant's session", async () => {
      const err = await deps.tenantDbs.withTenant(a, async (db) => {
        const { pool } = db.connectionManager;
        const lease = await pool.acquire();
        try {
          await new Promise<void>((resolve, reject) =>
            lease.query({ sql: 'SELECT 1', lastOnLease: true }, (e: Error | null) => (e ? reject(e) : resolve())),
          );
          return await new Promise<Error | null>((resolve) => lease.query({ sql: 'SELECT 2' }, resolve));
        } finally {
          pool.release(lease);
        }
      });
      expect(err).to.be.instanceOf(LeaseRevokedError);
    });
  });

  it('when every connection of the budget stays busy past TENANT_ACQUIRE_TIMEOUT_MS, another tenant gets 503 TENANT_CAPACITY', async () => {
    const deps = testDeps({ TENANT_CONNECTIONS_MAX: '1', TENANT_ACQUIRE_TIMEOUT_MS: '300' }, { subscribe: false });
    try {
      const [a, b] = [
        await provisionedOrg(deps, (await createTenant(admin)).id),
        await provisionedOrg(deps, (await createTenant(admin)).id),
      ];
      await deps.tenantDbs.withTenant(b, (db) => db.sequelize.query('SELECT 1')); // B's instance exists: only the connection is missing
      let release!: () => void;
      const held = deps.tenantDbs.withTenant(a, (db) => db.sequelize.transaction(() => new Promise<void>((r) => (release = r))));
      await eventually(async () => deps.tenantDbs.stats().connectionsInUse === 1);
      const err = await deps.tenantDbs.withTenant(b, (db) => db.sequelize.query('SELECT 1')).catch((e: unknown) => e);
      expect(err).to.include({ status: 503, code: 'TENANT_CAPACITY' });
      expect(deps.tenantDbs.stats().connectionTimeouts).to.equal(1);
      release();
      await held;
      expect(await deps.tenantDbs.withTenant(b, (db) => one(db.sequelize, 'SELECT 1 AS ok'))).to.deep.equal({ ok: 1 });
    } finally {
      await deps.close();
    }
  });

  it('a switch takes the idle session of the coldest tenant, not the least recently used one: a busy tenant keeps its session', async () => {
    const deps = testDeps({ TENANT_CONNECTIONS_MAX: '2' }, { subscribe: false });
    try {
      const [hot, cold, next] = [
        await provisionedOrg(deps, (await createTenant(admin)).id),
        await provisionedOrg(deps, (await createTenant(admin)).id),
        await provisionedOrg(deps, (await createTenant(admin)).id),
      ];
      const id = (org: ProvisionedOrg) => deps.tenantDbs.withTenant(org, (db) => one(db.sequelize, 'SELECT CONNECTION_ID() AS id'));
      // Two sessions, opened at once: the hot tenant's and the cold one's.
      const [{ id: hotId }, { id: firstColdId }] = await Promise.all([id(hot), id(cold)]);
      expect(firstColdId).to.not.equal(hotId);
      for (let i = 0; i < 5; i++) expect((await id(hot)).id).to.equal(hotId);
      // The cold tenant's session is now the most recently used: plain LRU would take the hot tenant's.
      const coldId = (await id(cold)).id;
      expect(coldId).to.equal(firstColdId);
      const switches = deps.tenantDbs.stats().switches;
      expect((await id(next)).id, "the cold tenant's session was switched").to.equal(coldId);
      expect((await id(hot)).id, 'the hot tenant still has its own').to.equal(hotId);
      expect(deps.tenantDbs.stats().switches - switches).to.equal(1);
    } finally {
      await deps.close();
    }
  });

  describe('the budget', () => {
    let api: TestApi;
    const tenants: { id: number; apiKey: string }[] = [];
    before(async function () {
      this.timeout(120_000);
      for (let i = 0; i < 40; i++) tenants.push(await createTenant(admin));
      api = await startApi({ TENANT_CONNECTIONS_MAX: '4', TENANT_POOL_MAX: '2', TENANT_CACHE_MAX: '100' });
    });
    after(async () => api.stop());

    it('40 tenants under 800 concurrent requests share at most TENANT_CONNECTIONS_MAX=4 connections, switched, every answer right', async function () {
      this.timeout(60_000);
      let sampling = true;
      let peak = 0;
      const sampler = (async () => {
        while (sampling) {
          const [r] = await rows<{ n: number }>(root, 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER LIKE :like', {
            like: `${RUN}\\_%`,
          });
          peak = Math.max(peak, Number(r?.n ?? 0));
        }
      })();
      const answers = await Promise.all(
        Array.from({ length: 800 }, (_, i) => {
          const t = tenants[(i * 7) % tenants.length]!;
          return api.request('GET', '/org', { org: t }).then(async (r) => {
            const list = await api.request('GET', '/messages?limit=1', { org: t });
            return { org: r.body.org?.id as number, want: t.id, status: list.status };
          });
        }),
      );
      sampling = false;
      await sampler;
      expect(answers.filter((x) => x.status !== 200 || x.org !== x.want)).to.deep.equal([]);
      expect(peak, 'peak tenant connections seen by MySQL').to.be.within(1, 4);
      const stats = api.deps.tenantDbs.stats();
      expect(stats.switches, 'sessions were switched between tenants').to.be.greaterThan(0);
      expect(stats.connections).to.be.at.most(4);
      expect(stats.connectionsInUse).to.equal(0);
    });
  });
});
