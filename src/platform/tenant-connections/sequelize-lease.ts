/**
 * A tenant's database over its server's shared connections (`TenantDb`): it owns no connection; each statement leases a
 * session authenticated as the tenant from `ServerConnections` through the tenant's `LeasePool`, which lean-query uses
 * directly, and which the tenant's Sequelize (v6, mysql dialect) instance, built on first use, uses as its pool.
 *
 * Sequelize internals relied on (re-check on any Sequelize 6.x upgrade; test/platform/tenant-connections.test.ts covers them):
 * - `sequelize.connectionManager.pool` is replaced. getConnection() calls `pool.acquire()`, releaseConnection()
 *   `pool.release(c)`, destroyConnection() `pool.destroy(c)`, close() `pool.drain()` then `pool.destroyAllNow()`.
 * - getConnection() opens a private connection to probe the version while `options.databaseVersion` is 0: we set it.
 * - Row parsing is mysql2's own (no Sequelize `typeCast`): the tenant tables hold integers, strings and DATETIMEs, which
 *   mysql2 parses alike (DATETIME into a Date in the connection's '+00:00'), without Sequelize's moment-timezone per
 *   value, measured at 13 % of a GET /messages. A column type Sequelize parses differently (GEOMETRY, JSON on MariaDB)
 *   would need its typeCast back.
 * - On a connection the mysql dialect only calls `query({sql}, cb)` and `execute(sql, params, cb)` and reads/writes
 *   `uuid`: a `LeaseHandle` offers just these, and is revoked when the lease ends, so a stale reference (a transaction a
 *   bug released early) fails instead of running SQL in whichever tenant's session the connection now serves.
 */
import { EventEmitter } from 'node:events';
import type { Sequelize } from 'sequelize';
import { unavailable } from '../lib/errors.js';
import { ConnectionBudgetTimeoutError, type RawConnection, type ServerConnections, type TenantLogin } from './server-connections.js';

/** Raised by a statement sent on a lease that has already ended. */
export class LeaseRevokedError extends Error {
  override readonly name = 'LeaseRevokedError';
}

/** What Sequelize holds instead of the raw connection, for the length of one lease. */
export class LeaseHandle {
  /** Set by Sequelize's Transaction while it holds the connection. */
  uuid: string | undefined;
  /**
   * A statement marked `lastOnLease` was sent: the session may already be switching to another tenant behind it, so
   * anything more on this lease is refused.
   */
  private spent = false;
  constructor(
    private raw: RawConnection | undefined,
    private readonly tenant: string,
  ) {}
  /** Ends the lease: later statements are refused. */
  revoke(): RawConnection | undefined {
    const raw = this.raw;
    this.raw = undefined;
    return raw;
  }
  query(...args: unknown[]): unknown {
    if (!this.raw || this.spent) return this.refuse(args);
    if ((args[0] as { lastOnLease?: unknown } | null)?.lastOnLease === true) this.spent = true;
    return (this.raw.query as (...a: unknown[]) => unknown)(...args);
  }
  execute(...args: unknown[]): unknown {
    return this.raw && !this.spent ? (this.raw.execute as (...a: unknown[]) => unknown)(...args) : this.refuse(args);
  }
  private refuse(args: unknown[]): EventEmitter {
    const cb = args.at(-1);
    const err = new LeaseRevokedError(`the connection lease of tenant ${this.tenant} has ended; statement refused`);
    if (typeof cb === 'function') process.nextTick(cb, err);
    return new EventEmitter(); // Sequelize calls setMaxListeners() on what query() returns
  }
}

interface SequelizeInternals {
  options: { dialect: string; databaseVersion?: string | number; replication?: unknown };
  connectionManager: { pool: unknown; dialect: { defaultVersion: string } };
}

/**
 * The pool Sequelize sees: leases of `connections` as `login`. A class, not an object of closures: one per cached
 * tenant (10,000 in a large fleet), and a dozen closures each (named ones cost a property dictionary apiece under
 * tsx's keepNames) made it about 3 KiB of every warm tenant's memory.
 */
export class LeasePool {
  private readonly lent = new Set<LeaseHandle>();
  private pending = 0;
  private draining = false;
  private drained: Array<() => void> = [];

  constructor(
    private readonly connections: ServerConnections,
    private readonly login: TenantLogin,
  ) {}

  /** acquire() when an idle session of this tenant is at hand (lean-query's hot path): no promise, else undefined. */
  tryAcquire(): LeaseHandle | undefined {
    if (this.draining) return undefined;
    const raw = this.connections.tryAcquire(this.login);
    return raw ? this.lend(raw) : undefined;
  }

  async acquire(): Promise<LeaseHandle> {
    if (this.draining) throw unavailable('TENANT_DB_UNAVAILABLE', 'this tenant instance was closed; try again', 1000);
    this.pending++;
    try {
      return this.lend(await this.connections.acquire(this.login));
    } catch (err) {
      // Every connection of the server's budget stayed busy: 503 TENANT_CAPACITY, like a full instance cache.
      if (err instanceof ConnectionBudgetTimeoutError)
        throw unavailable('TENANT_CAPACITY', 'every connection to the organisation database server is busy; try again', 1000, err);
      throw err;
    } finally {
      this.pending--;
      this.settle();
    }
  }

  release(handle: LeaseHandle): void {
    this.end(handle, false);
  }

  destroy(handle: LeaseHandle): void {
    this.end(handle, true);
  }

  async drain(): Promise<void> {
    this.draining = true;
    if (this.lent.size > 0 || this.pending > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
  }

  destroyAllNow(): Promise<void> {
    for (const handle of [...this.lent]) this.destroy(handle);
    return Promise.resolve();
  }

  get size(): number {
    return this.lent.size;
  }
  get using(): number {
    return this.lent.size;
  }
  get available(): number {
    return 0;
  }
  get waiting(): number {
    return this.pending;
  }

  private lend(raw: RawConnection): LeaseHandle {
    const handle = new LeaseHandle(raw, this.login.key);
    this.lent.add(handle);
    return handle;
  }

  /** Ends a lease of ours, giving its connection back or destroying it (not ours, or ended already: never touch another lease). */
  private end(handle: LeaseHandle, destroy: boolean): void {
    if (!this.lent.delete(handle)) return;
    const raw = handle.revoke();
    if (raw) {
      if (destroy) this.connections.destroy(raw);
      else this.connections.release(raw);
    }
    this.settle();
  }

  private settle(): void {
    if (this.lent.size > 0 || this.pending > 0) return;
    const waiting = this.drained;
    this.drained = [];
    for (const done of waiting) done();
  }
}

/**
 * A tenant's database as a unit of work gets it: its lease pool, where lean-query's statements (the hot path) take
 * their session (`connectionManager.pool`, as on a Sequelize instance), and its Sequelize instance, built on first use
 * only (a Sequelize query or transaction) over the same pool. Built for every cached tenant, the instance cost about
 * 3 KiB of each warm tenant's memory and about 135 µs of CPU on its first request, for requests that never use it.
 */
export class TenantDb {
  readonly connectionManager: { readonly pool: LeasePool };
  private built: Sequelize | undefined;

  constructor(
    connections: ServerConnections,
    private readonly login: TenantLogin,
    /**
     * Makes a tenant's Sequelize instance for its login (its pool is replaced by this lease pool): one function shared
     * by every tenant, not a closure per tenant (which would keep the org record it was made from alive).
     */
    private readonly make: (login: TenantLogin) => Sequelize,
  ) {
    this.connectionManager = { pool: new LeasePool(connections, login) };
  }

  /** The tenant's Sequelize instance, leasing its sessions like every statement of this tenant. */
  get sequelize(): Sequelize {
    if (!this.built) {
      const sequelize = this.make(this.login);
      leaseThrough(sequelize, this.connectionManager.pool);
      this.built = sequelize;
    }
    return this.built;
  }

  /** Waits for the leases to end, then ends any left (what Sequelize's close() does with a pool). */
  async close(): Promise<void> {
    if (this.built) return this.built.close();
    const { pool } = this.connectionManager;
    await pool.drain();
    await pool.destroyAllNow();
  }
}

/** Makes `sequelize` lease its connections through `pool`. */
function leaseThrough(sequelize: Sequelize, pool: LeasePool): void {
  const s = sequelize as unknown as SequelizeInternals;
  const cm = s.connectionManager;
  if (s.options.dialect !== 'mysql' || s.options.replication) throw new Error('leaseThrough: mysql dialect without replication only');
  if (!s.options.databaseVersion) s.options.databaseVersion = cm.dialect.defaultVersion;
  cm.pool = pool;
}
