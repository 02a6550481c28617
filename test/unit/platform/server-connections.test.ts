/**
 * The scheduling rules of a server's connection budget, with fake mysql2 connections (no server): which session is
 * lent, when one is switched or opened, the queue, the per-tenant cap, timeouts, and what happens to sessions that
 * fail or come back dirty. test/platform/tenant-connections.test.ts proves the same rules' effects on a real MariaDB.
 */
import { EventEmitter } from 'node:events';
import { expect } from 'chai';
import type mysql from 'mysql2';
import {
  createServerConnections,
  type RawConnection,
  type ServerConnectionsOptions,
  type TenantLogin,
} from '../../../src/platform/tenant-connections/server-connections.js';
import { deferred } from '../fakes.js';

const IN_TRANS = 0x0001;
const AUTOCOMMIT = 0x0002;

/** A fake mysql2 connection: connects on the next tick, records what it is asked, answers OK packets. */
class FakeConnection extends EventEmitter {
  static all: FakeConnection[] = [];
  /** What `SELECT @@…` answers per user: the session variables its account gives it. */
  static accounts: Record<string, Record<string, unknown>> = {};
  readonly log: string[] = [];
  readonly config: { charsetNumber: number; user: string };
  stream = { destroyed: false };
  /** The serverStatus of the next OK packet; a changeUser failure to inject. */
  nextStatus = AUTOCOMMIT;
  failChangeUser: Error | undefined;
  constructor(readonly options: mysql.ConnectionOptions) {
    super();
    this.config = { charsetNumber: 45, user: String(options.user) };
    FakeConnection.all.push(this);
    process.nextTick(() => this.emit('connect', { serverVersion: '5.5.5-10.11.19-MariaDB' }));
  }
  get user(): string {
    return this.config.user;
  }
  query(sql: string | { sql: string }, cb: (err: Error | null, result?: unknown) => void): void {
    const text = typeof sql === 'string' ? sql : sql.sql;
    this.log.push(text);
    const status = this.nextStatus;
    // A read of the session's variables answers what the account of the current user sets (FakeConnection.accounts).
    const rows = text.startsWith('SELECT @@') ? [FakeConnection.accounts[this.config.user] ?? {}] : undefined;
    process.nextTick(() => cb(null, rows ?? { serverStatus: status }));
  }
  /** A prepared statement: logged as `EXECUTE <sql>`. */
  execute(sql: string | { sql: string }, cb: (err: Error | null, result?: unknown) => void): void {
    this.log.push(`EXECUTE ${typeof sql === 'string' ? sql : sql.sql}`);
    const status = this.nextStatus;
    process.nextTick(() => cb(null, { serverStatus: status }));
  }
  changeUser(o: { user: string }, cb: (err: Error | null) => void): void {
    this.log.push(`CHANGE_USER ${o.user}`);
    const err = this.failChangeUser;
    if (!err) this.config.user = o.user;
    process.nextTick(() => cb(err ?? null));
  }
  destroy(): void {
    this.stream.destroyed = true;
    this.log.push('DESTROY');
  }
}

const login = (key: string): TenantLogin => ({ key, user: `u${key}`, password: `p${key}`, database: `db${key}` });
const fake = (c: RawConnection) => c as unknown as FakeConnection;

function budget(over: Partial<ServerConnectionsOptions> = {}) {
  return createServerConnections({
    host: '127.0.0.1',
    port: 3306,
    max: 2,
    perTenantMax: 2,
    acquireTimeoutMs: 200,
    idleMs: 60_000,
    retryAfterMs: 1000,
    connectionOptions: {},
    sessionInit: (version) => (/mariadb/i.test(version) ? 'SET time_zone = UTC, max_statement_time = 10' : 'SET max_execution_time'),
    connect: (o) => new FakeConnection(o) as unknown as RawConnection,
    ...over,
  });
}

describe('server connections (unit, fake mysql2)', () => {
  beforeEach(() => {
    FakeConnection.all = [];
    FakeConnection.accounts = {};
  });

  it('opens a connection as the tenant and runs the session init chosen for the server version', async () => {
    const conns = budget();
    const c = fake(await conns.acquire(login('1')));
    expect(c.options).to.include({ user: 'u1', password: 'p1', database: 'db1' });
    expect(c.log).to.deep.equal(['SET time_zone = UTC, max_statement_time = 10']);
    expect(conns.stats()).to.include({ open: 1, leased: 1, opens: 1 });
    await conns.close(0);
  });

  it('lends an idle session of the same tenant again without any I/O', async () => {
    const conns = budget();
    const first = await conns.acquire(login('1'));
    conns.release(first);
    const again = await conns.acquire(login('1'));
    expect(again).to.equal(first);
    expect(fake(again).log).to.have.length(1); // the init of the open only
    expect(conns.stats()).to.include({ sameTenantHits: 1, switches: 0, opens: 1 });
    await conns.close(0);
  });

  it('opens while under the budget, then switches the least recently used idle session of another tenant', async () => {
    const conns = budget({ max: 2 });
    const a = await conns.acquire(login('a'));
    const b = await conns.acquire(login('b'));
    conns.release(b);
    conns.release(a); // a is now the most recently used: b is switched first
    const c = await conns.acquire(login('c'));
    expect(c).to.equal(b);
    expect(fake(c).log.slice(-2)).to.deep.equal(['CHANGE_USER uc', 'SET time_zone = UTC, max_statement_time = 10']);
    expect(conns.stats()).to.include({ open: 2, opens: 2, switches: 1 });
    await conns.close(0);
  });

  it("at the budget, a tenant whose own session is lent waits for it (switchWaitMs) rather than switching another tenant's idle one", async () => {
    const conns = budget({ max: 2, switchWaitMs: 60_000 });
    const a1 = await conns.acquire(login('a'));
    const b = await conns.acquire(login('b'));
    conns.release(b); // b's session parked; a's lent
    let served: RawConnection | undefined;
    const second = conns.acquire(login('a')).then((c) => (served = c));
    await new Promise((r) => setImmediate(r));
    expect(served, 'queued: no switch of b').to.equal(undefined);
    expect(conns.stats()).to.include({ switches: 0, waiting: 1 });
    conns.release(a1);
    expect(await second).to.equal(a1);
    expect(conns.stats()).to.include({ switches: 0, sameTenantHits: 1 });
    expect(await conns.acquire(login('b')), "b's session stayed parked for b").to.equal(b);
    await conns.close(0);
  });

  it("switches another tenant's idle session once the wait for its own is over, and at once without switchWaitMs", async () => {
    for (const switchWaitMs of [30, 0]) {
      const conns = budget({ max: 2, switchWaitMs });
      const a1 = await conns.acquire(login('a'));
      const b = await conns.acquire(login('b'));
      conns.release(b);
      expect(await conns.acquire(login('a'))).to.equal(b);
      expect(fake(b).log).to.include('CHANGE_USER ua');
      expect(conns.stats()).to.include({ switches: 1 });
      conns.release(a1);
      await conns.close(0);
    }
  });

  it('with room in the budget, opens for a new tenant rather than switching an idle session parked for another', async () => {
    const conns = budget({ max: 3 });
    const a = await conns.acquire(login('a'));
    conns.release(a);
    const b = await conns.acquire(login('b'));
    expect(b).to.not.equal(a);
    conns.release(b);
    expect(conns.stats()).to.include({ open: 2, opens: 2, switches: 0 });
    // Both parked: each tenant finds its own again without a switch.
    expect(await conns.acquire(login('a'))).to.equal(a);
    expect(await conns.acquire(login('b'))).to.equal(b);
    expect(conns.stats()).to.include({ sameTenantHits: 2, switches: 0 });
    await conns.close(0);
  });

  it('skips the session init for a login whose account already sets it (read once per login), never for one that does not', async () => {
    const INIT = 'SET time_zone = UTC, max_statement_time = 10';
    const CHECK = 'SELECT @@max_statement_time AS seconds';
    FakeConnection.accounts = { ua: { seconds: 10 }, ub: { seconds: 0 } };
    const conns = budget({ max: 1, sessionCheck: () => ({ sql: CHECK, holds: (row) => row.seconds === 10 }) });
    const [a, b] = [login('a'), login('b')];
    const c = fake(await conns.acquire(a));
    expect(c.log).to.deep.equal([CHECK]); // a's account sets it: no init
    conns.release(c as unknown as RawConnection);
    for (const next of [b, a, b, a]) conns.release(await conns.acquire(next));
    expect(c.log).to.deep.equal([CHECK, 'CHANGE_USER ub', CHECK, INIT, 'CHANGE_USER ua', 'CHANGE_USER ub', INIT, 'CHANGE_USER ua']);
    expect(conns.stats()).to.include({ switches: 4, inits: 2, initsSkipped: 3 });
    // A new login object (a rebuilt tenant instance: new credentials, say) is read again.
    conns.release(await conns.acquire(b));
    await conns.acquire({ ...a });
    expect(c.log.slice(-2)).to.deep.equal(['CHANGE_USER ua', CHECK]);
    await conns.close(0);
  });

  it("tryAcquire lends only an idle session of the tenant's own, and only when nobody queues and the tenant is under its cap", async () => {
    const conns = budget({ max: 2, perTenantMax: 1 });
    expect(conns.tryAcquire(login('a')), 'nothing open yet: acquire() opens').to.equal(undefined);
    const a = await conns.acquire(login('a'));
    conns.release(a);
    expect(conns.tryAcquire(login('b')), "another tenant's idle session is a switch: acquire() does it").to.equal(undefined);
    const again = conns.tryAcquire(login('a'));
    expect(again).to.equal(a);
    expect(fake(a).log).to.have.length(1); // the init of the open only: no I/O
    expect(conns.tryAcquire(login('a')), 'at its cap of one').to.equal(undefined);
    const b = await conns.acquire(login('b'));
    const queued = conns.acquire(login('c'));
    conns.release(again!);
    expect(conns.tryAcquire(login('a')), 'the released session went to the queued tenant').to.equal(undefined);
    conns.release(await queued);
    conns.release(b);
    expect(conns.stats()).to.include({ sameTenantHits: 1, leased: 0 });
    await conns.close(0);
    expect(conns.tryAcquire(login('b')), 'closed').to.equal(undefined);
  });

  it('runs a preparedWhenRepeated statement as text on its first run since the login was set, prepared after, as text again after a switch', async () => {
    const conns = budget({ max: 1 });
    const run = (c: RawConnection, sql: string) =>
      new Promise((resolve, reject) =>
        (c.query as unknown as (o: object, cb: (e: Error | null) => void) => void)({ sql, values: [], preparedWhenRepeated: true }, (e) =>
          e ? reject(e) : resolve(undefined),
        ),
      );
    const insert = 'INSERT INTO messages (body) VALUES (?)';
    const a = await conns.acquire(login('a'));
    await run(a, insert);
    await run(a, insert);
    await run(a, 'INSERT INTO other (x) VALUES (?)');
    conns.release(a);
    const b = await conns.acquire(login('b')); // the same connection, switched
    expect(b).to.equal(a);
    await run(b, insert);
    await run(b, insert);
    conns.release(b);
    expect(fake(a).log.slice(1)).to.deep.equal([
      insert,
      `EXECUTE ${insert}`,
      'INSERT INTO other (x) VALUES (?)',
      'CHANGE_USER ub',
      'SET time_zone = UTC, max_statement_time = 10',
      insert,
      `EXECUTE ${insert}`,
    ]);
    await conns.close(0);
  });

  it('never opens more than max: the next caller waits in FIFO order for a release', async () => {
    const conns = budget({ max: 1 });
    const held = await conns.acquire(login('a'));
    const order: string[] = [];
    const b = conns.acquire(login('b')).then((c) => (order.push('b'), c));
    const c = conns.acquire(login('c')).then((x) => (order.push('c'), x));
    await new Promise((r) => setImmediate(r));
    expect(conns.stats()).to.include({ open: 1, waiting: 2 });
    conns.release(held);
    conns.release(await b);
    conns.release(await c);
    expect(order).to.deep.equal(['b', 'c']);
    expect(FakeConnection.all).to.have.length(1);
    await conns.close(0);
  });

  it('holds at most perTenantMax sessions for one tenant; another tenant queued behind it is served first', async () => {
    const conns = budget({ max: 3, perTenantMax: 1 });
    const a1 = await conns.acquire(login('a'));
    const a2 = conns.acquire(login('a'));
    const b = await conns.acquire(login('b')); // not stuck behind a's second request
    expect(conns.stats()).to.include({ leased: 2, waiting: 1 });
    conns.release(a1);
    expect(await a2).to.equal(a1);
    conns.release(b);
    await conns.close(0);
  });

  it('a wait past acquireTimeoutMs fails with the budget timeout and leaves the queue', async () => {
    const conns = budget({ max: 1, acquireTimeoutMs: 30 });
    const held = await conns.acquire(login('a'));
    const err = await conns.acquire(login('b')).catch((e: Error) => e);
    expect(err).to.include({ name: 'ConnectionBudgetTimeoutError', code: 'TENANT_CONNECTION_TIMEOUT' });
    expect(conns.stats()).to.include({ waiting: 0, timeouts: 1 });
    conns.release(held);
    await conns.close(0);
  });

  it('a failed switch destroys the connection (the server kept the previous login) and answers 503 TENANT_DB_UNAVAILABLE', async () => {
    const conns = budget({ max: 1 });
    const a = await conns.acquire(login('a'));
    fake(a).failChangeUser = Object.assign(new Error('Access denied'), { code: 'ER_ACCESS_DENIED_ERROR' });
    conns.release(a);
    const err = await conns.acquire(login('b')).catch((e: unknown) => e);
    expect(err).to.include({ status: 503, code: 'TENANT_DB_UNAVAILABLE' });
    expect(fake(a).log.at(-1)).to.equal('DESTROY');
    expect(conns.stats()).to.include({ open: 0, switchFailures: 1 });
    // A login failure is the tenant's, not the server's: the next tenant is served (a new connection).
    const c = await conns.acquire(login('c'));
    expect(c).not.to.equal(a);
    await conns.close(0);
  });

  it('a session given back inside a transaction is reset (same-user COM_CHANGE_USER + init) before anyone gets it', async () => {
    const conns = budget({ max: 1 });
    const a = await conns.acquire(login('a'));
    fake(a).nextStatus = IN_TRANS | AUTOCOMMIT;
    await new Promise<void>((resolve) => a.query('START TRANSACTION', () => resolve()));
    fake(a).nextStatus = AUTOCOMMIT;
    conns.release(a);
    const again = await conns.acquire(login('a'));
    expect(again).to.equal(a);
    expect(fake(a).log.slice(-2)).to.deep.equal(['CHANGE_USER ua', 'SET time_zone = UTC, max_statement_time = 10']);
    expect(conns.stats()).to.include({ resets: 1 });
    await conns.close(0);
  });

  it('after a refused connection the server counts as down: acquires fail at once for retryAfterMs', async () => {
    const refused = () => {
      const c = new EventEmitter() as unknown as RawConnection;
      Object.assign(c, { destroy: () => undefined });
      process.nextTick(() => (c as unknown as EventEmitter).emit('error', Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })));
      return c;
    };
    const conns = budget({ connect: refused, retryAfterMs: 10_000 });
    expect(await conns.acquire(login('a')).catch((e: unknown) => e)).to.include({ status: 503, code: 'TENANT_DB_UNAVAILABLE' });
    const opens = conns.stats().opens;
    expect(await conns.acquire(login('b')).catch((e: unknown) => e)).to.include({ code: 'TENANT_DB_UNAVAILABLE' });
    expect(conns.stats().opens, 'no second attempt within the window').to.equal(opens);
    await conns.close(0);
  });

  it("evictTenant closes the tenant's idle sessions now and its lent ones when they come back", async () => {
    const conns = budget({ max: 2 });
    const [a1, a2] = [await conns.acquire(login('a')), await conns.acquire(login('a'))];
    conns.release(a1);
    conns.evictTenant('a');
    expect(fake(a1).log.at(-1)).to.equal('DESTROY');
    expect(fake(a2).log.at(-1)).not.to.equal('DESTROY');
    conns.release(a2);
    expect(fake(a2).log.at(-1)).to.equal('DESTROY');
    expect(conns.stats().open).to.equal(0);
    await conns.close(0);
  });

  it('close() fails the queue and refuses new acquires', async () => {
    const conns = budget({ max: 1 });
    const held = await conns.acquire(login('a'));
    const waiting = conns.acquire(login('b')).catch((e: Error) => e.message);
    const done = deferred<void>();
    void conns.close(50).then(() => done.resolve());
    expect(await waiting).to.match(/closing/);
    expect(await conns.acquire(login('c')).catch((e: Error) => e.message)).to.match(/closing/);
    conns.release(held);
    await done.promise;
    expect(conns.stats().open).to.equal(0);
  });
});
