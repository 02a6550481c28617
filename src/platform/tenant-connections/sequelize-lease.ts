/**
 * Routes one tenant's Sequelize (v6, mysql dialect) instance through its server's shared connections: the instance
 * owns no connection; each query leases a session authenticated as the tenant from `ServerConnections`.
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
    return this.raw ? (this.raw.query as (...a: unknown[]) => unknown)(...args) : this.refuse(args);
  }
  execute(...args: unknown[]): unknown {
    return this.raw ? (this.raw.execute as (...a: unknown[]) => unknown)(...args) : this.refuse(args);
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

/** Makes `sequelize` lease its connections from `connections` as `login`. */
export function leaseThrough(sequelize: Sequelize, connections: ServerConnections, login: TenantLogin): void {
  const s = sequelize as unknown as SequelizeInternals;
  const cm = s.connectionManager;
  if (s.options.dialect !== 'mysql' || s.options.replication) throw new Error('leaseThrough: mysql dialect without replication only');
  if (!s.options.databaseVersion) s.options.databaseVersion = cm.dialect.defaultVersion;
  const lent = new Set<LeaseHandle>();
  let pending = 0;
  let draining = false;
  let drained: Array<() => void> = [];
  const settle = () => {
    if (lent.size > 0 || pending > 0) return;
    const waiting = drained;
    drained = [];
    for (const done of waiting) done();
  };
  const end = (handle: LeaseHandle, give: (c: RawConnection) => void) => {
    if (!lent.delete(handle)) return; // not ours, or ended already: never touch another lease
    const raw = handle.revoke();
    if (raw) give(raw);
    settle();
  };

  const lendRaw = (raw: RawConnection) => {
    const handle = new LeaseHandle(raw, login.key);
    lent.add(handle);
    return handle;
  };

  cm.pool = {
    /** acquire() when an idle session of this tenant is at hand (lean-query's hot path): no promise, else undefined. */
    tryAcquire(): LeaseHandle | undefined {
      if (draining) return undefined;
      const raw = connections.tryAcquire(login);
      return raw ? lendRaw(raw) : undefined;
    },
    async acquire(): Promise<LeaseHandle> {
      if (draining) throw unavailable('TENANT_DB_UNAVAILABLE', 'this tenant instance was closed; try again', 1000);
      pending++;
      try {
        return lendRaw(await connections.acquire(login));
      } catch (err) {
        // Every connection of the server's budget stayed busy: 503 TENANT_CAPACITY, like a full instance cache.
        if (err instanceof ConnectionBudgetTimeoutError)
          throw unavailable('TENANT_CAPACITY', 'every connection to the organisation database server is busy; try again', 1000, err);
        throw err;
      } finally {
        pending--;
        settle();
      }
    },
    release: (handle: LeaseHandle) => end(handle, (raw) => connections.release(raw)),
    destroy: (handle: LeaseHandle) => end(handle, (raw) => connections.destroy(raw)),
    async drain(): Promise<void> {
      draining = true;
      if (lent.size > 0 || pending > 0) await new Promise<void>((resolve) => drained.push(resolve));
    },
    destroyAllNow(): Promise<void> {
      for (const handle of [...lent]) end(handle, (raw) => connections.destroy(raw));
      return Promise.resolve();
    },
    get size() {
      return lent.size;
    },
    get using() {
      return lent.size;
    },
    get available() {
      return 0;
    },
    get waiting() {
      return pending;
    },
  };
}
