/**
 * Connection multiplexing for database-per-tenant on one MySQL/MariaDB server (prototype).
 *
 * A `ServerConnections` owns at most `max` PHYSICAL mysql2 connections (created with `mysql2.createConnection`, never a
 * mysql2 Pool) to one server and lends them to tenants. Each lent connection is already authenticated as the tenant's
 * user with the tenant's database selected:
 *   1. an idle connection whose session already belongs to exactly these credentials  → no round trip;
 *   2. else the least recently used idle connection of another tenant, switched with COM_CHANGE_USER
 *      (mysql2 `changeUser`) + the session-init SQL                                     → ~2 round trips;
 *   3. else a new connection, if fewer than `max` are open or opening                   → TCP + handshake + init;
 *   4. else the caller waits in a FIFO queue until `acquireTimeoutMs`, then gets an AcquireTimeoutError.
 * Safety rules (see safety.ts for the proofs on MariaDB 10.11):
 *   - A connection changes tenant ONLY through a successful COM_CHANGE_USER. If changeUser fails (wrong password, dropped
 *     user, network), the connection is DESTROYED: on MariaDB a failed COM_CHANGE_USER leaves the session alive and still
 *     authenticated as the PREVIOUS tenant (while mysql2 has already rewritten conn.config to the new user).
 *   - COM_CHANGE_USER rolls back an open transaction and resets user variables, session variables, temporary tables,
 *     named locks and prepared statements; mysql2 clears its prepared-statement cache in changeUser.
 *   - Reuse by the SAME credentials does not reset the session (as a normal pool does), except when the last statement's
 *     OK packet said a transaction is open or autocommit is off ("dirty"): then the connection gets COM_RESET_CONNECTION
 *     + session init on release, so a leaked transaction never reaches the next request, same tenant or not.
 *   - A connection that errored fatally (mysql2 _fatalError/_protocolError/_closing/stream destroyed) is never reused.
 *
 * `attachSequelize()` makes one Sequelize (v6, mysql dialect) instance use a ServerConnections for one tenant by
 * replacing `sequelize.connectionManager.pool` with an adapter (see the comment there for the exact internals touched).
 */
import { EventEmitter } from 'node:events';
import mysql from 'mysql2';
import type { Sequelize } from 'sequelize';
import {
  AccessDeniedError, ConnectionAcquireTimeoutError, ConnectionError, ConnectionRefusedError, HostNotFoundError,
  HostNotReachableError, InvalidConnectionError,
} from 'sequelize';

/** mysql2 server-status bits (include/mysql_com.h). */
const SERVER_STATUS_IN_TRANS = 0x0001;
const SERVER_STATUS_AUTOCOMMIT = 0x0002;

export interface TenantCredentials {
  /** Stable tenant id (org id): used in stats and for evictTenant. */
  key: string;
  user: string;
  password: string;
  database: string;
}

export interface ServerConnectionsOptions {
  host: string;
  port: number;
  /** Physical connections to this server from this process (TENANT_CONNECTIONS_MAX). */
  max: number;
  /** At most this many connections lent to one tenant at once (fairness; default: max). */
  perTenantMax?: number;
  /** How long acquire() waits in the queue (ms). */
  acquireTimeoutMs: number;
  /** Idle connections older than this are closed (ms; keep below the server's wait_timeout). */
  idleMs?: number;
  /**
   * Open a new connection (while under `max`) before switching an idle one of another tenant. Default false (switch
   * first: fewest connections). True keeps more sessions parked per tenant when `max` exceeds the concurrency.
   */
  openBeforeSwitch?: boolean;
  /** Waiters beyond this are refused at once (default: unbounded). */
  maxQueue?: number;
  /** Extra mysql2 options for every connection (timezone, flags, typeCast, supportBigNumbers, connectTimeout...). */
  connectionOptions?: mysql.ConnectionOptions;
  /** SQL run on every fresh or switched or reset session, e.g. "SET time_zone = '+00:00'" (COM_CHANGE_USER resets it). */
  sessionInit?: string;
  /**
   * Optional SQL boolean expression, evaluated once on every NEW connection (rare): when true, the server's global
   * defaults already give what sessionInit sets (e.g. time_zone SYSTEM on a UTC host), so sessionInit is skipped after
   * switches and resets — saving one round trip per switch. Re-evaluated at each open, so a changed global is noticed
   * at the next open (not before).
   */
  sessionInitSkipWhen?: string;
  /**
   * What to do on release with a transaction open / autocommit off: 'reset' (default: COM_CHANGE_USER to the same
   * credentials + session init, i.e. a full session reset), 'rollback' (ROLLBACK only), 'destroy'.
   */
  dirtyPolicy?: 'reset' | 'rollback' | 'destroy';
  onEvent?: (event: string, detail: Record<string, unknown>) => void;
}

export class AcquireTimeoutError extends Error {
  readonly code = 'MUX_ACQUIRE_TIMEOUT';
}
export class QueueFullError extends Error {
  readonly code = 'MUX_QUEUE_FULL';
}

type Conn = mysql.Connection & {
  _fatalError?: unknown; _protocolError?: unknown; _closing?: boolean; stream: { destroyed: boolean };
  threadId: number | null;
};

interface Slot {
  conn: Conn;
  /** Identity of the authenticated session: user/database/password (a rotated password must re-authenticate). */
  identity: string;
  tenantKey: string;
  leased: boolean;
  dead: boolean;
  /** Last serverStatus seen in an OK packet on this connection (undefined: none since open/switch/reset). */
  serverStatus?: number;
  lastUsed: number;
  /** Destroy instead of reusing on release (evicted tenant, closing router). */
  retire: boolean;
  uses: number;
  /** Credentials of the session (for a same-user COM_CHANGE_USER when a dirty session must be reset). */
  creds: TenantCredentials;
  /** mysql2 charsetNumber from the handshake: restored before every COM_CHANGE_USER (see switchTo). */
  charsetNumber0: number;
}

interface Waiter {
  creds: TenantCredentials;
  identity: string;
  resolve(conn: Conn): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  /** Settled (resolved, rejected or timed out). */
  done: boolean;
  /** Out of the queue, a switch or open in progress for it. */
  serving: boolean;
}

const identityOf = (c: TenantCredentials) => `${c.user}\u0000${c.database}\u0000${c.password}`;

export interface ServerConnectionsStats {
  open: number; opening: number; idle: number; leased: number; waiting: number;
  acquires: number; sameTenantHits: number; switches: number; opens: number; resets: number;
  destroyed: number; timeouts: number; switchFailures: number;
}

export class ServerConnections extends EventEmitter {
  readonly opts: Required<Omit<ServerConnectionsOptions, 'onEvent' | 'sessionInit' | 'sessionInitSkipWhen' | 'connectionOptions'>> & ServerConnectionsOptions;
  /** Server version from the first handshake (e.g. '10.11.19'), for Sequelize's `databaseVersion` option. */
  serverVersion: string | undefined;
  private readonly slots = new Map<Conn, Slot>();
  /** Idle slots by identity, most recently used last. */
  private readonly idleByIdentity = new Map<string, Slot[]>();
  /** All idle slots, least recently released first (the victims for a switch). */
  private readonly idleLru = new Set<Slot>();
  private readonly leasedByTenant = new Map<string, number>();
  private readonly waiters: Waiter[] = [];
  private opening = 0;
  private closed = false;
  /** False once sessionInitSkipWhen was true on the latest opened connection. */
  private initAfterSwitch = true;
  private readonly reaper: NodeJS.Timeout | undefined;
  private readonly counters = { acquires: 0, sameTenantHits: 0, switches: 0, opens: 0, resets: 0, destroyed: 0, timeouts: 0, switchFailures: 0 };

  constructor(opts: ServerConnectionsOptions) {
    super();
    this.opts = { perTenantMax: opts.max, idleMs: 60_000, maxQueue: Infinity, dirtyPolicy: 'reset', openBeforeSwitch: false, ...opts };
    if (this.opts.idleMs > 0) {
      this.reaper = setInterval(() => this.reapIdle(), Math.min(this.opts.idleMs, 1000));
      this.reaper.unref();
    }
  }

  // ---------------------------------------------------------------- public API

  /** A connection authenticated as `creds` with `creds.database` selected; give it back with release() or destroy(). */
  acquire(creds: TenantCredentials): Promise<Conn> {
    if (this.closed) return Promise.reject(new Error('ServerConnections is closed'));
    this.counters.acquires++;
    const identity = identityOf(creds);
    // Fast path: nobody queued and an idle session of exactly this identity (no I/O, no switch).
    if (this.waiters.length === 0 && this.underTenantCap(creds.key)) {
      const slot = this.takeIdle(identity);
      if (slot) {
        this.counters.sameTenantHits++;
        this.lend(slot, creds.key);
        return Promise.resolve(slot.conn);
      }
    }
    if (this.waiters.length >= this.opts.maxQueue) return Promise.reject(new QueueFullError('tenant connection queue is full'));
    return new Promise<Conn>((resolve, reject) => {
      // The deadline covers queueing AND the switch/open that serves the waiter: a connection that becomes ready
      // after the caller gave up is given back (release) instead of being lost.
      const w: Waiter = {
        creds, identity, done: false, serving: false,
        resolve: (conn) => {
          clearTimeout(w.timer);
          if (w.done) { this.release(conn); return; }
          w.done = true;
          resolve(conn);
        },
        reject: (err) => {
          clearTimeout(w.timer);
          if (w.done) return;
          w.done = true;
          reject(err);
        },
        timer: setTimeout(() => {
          if (w.done) return;
          w.done = true;
          if (!w.serving) this.removeWaiter(w);
          this.counters.timeouts++;
          reject(new AcquireTimeoutError(`no connection to ${this.opts.host}:${this.opts.port} for ${creds.key} within ${this.opts.acquireTimeoutMs} ms`));
        }, this.opts.acquireTimeoutMs),
      };
      this.waiters.push(w);
      this.pump();
    });
  }

  /** Gives a lent connection back. Dirty (open transaction / autocommit off) sessions are reset first; dead ones are closed. */
  release(conn: Conn): void {
    const slot = this.slots.get(conn);
    if (!slot || !slot.leased) return; // unknown or double release: ignore
    slot.leased = false;
    this.decTenant(slot.tenantKey);
    slot.lastUsed = Date.now();
    if (slot.dead || !isUsable(conn) || slot.retire || this.closed) {
      this.kill(slot, 'released unusable/retired');
      this.pump();
      return;
    }
    if (isDirty(slot)) {
      this.emitEvent('dirty-release', { tenant: slot.tenantKey, serverStatus: slot.serverStatus, thread: conn.threadId });
      this.cleanDirty(slot).then(
        () => { this.park(slot); this.pump(); },
        () => { this.kill(slot, 'reset failed'); this.pump(); },
      );
      return;
    }
    this.park(slot);
    this.pump();
  }

  /** Closes a lent connection (after an error that leaves its state unknown). */
  destroy(conn: Conn): void {
    const slot = this.slots.get(conn);
    if (!slot) return;
    if (slot.leased) {
      slot.leased = false;
      this.decTenant(slot.tenantKey);
    }
    this.kill(slot, 'destroyed by caller');
    this.pump();
  }

  /** The tenant's credentials changed or it was dropped: its idle sessions are closed, its lent ones when released. */
  evictTenant(key: string): void {
    for (const slot of this.slots.values()) {
      if (slot.tenantKey !== key) continue;
      if (slot.leased) slot.retire = true;
      else this.kill(slot, 'tenant evicted');
    }
    this.pump();
  }

  stats(): ServerConnectionsStats {
    let leased = 0;
    for (const s of this.slots.values()) if (s.leased) leased++;
    return { open: this.slots.size, opening: this.opening, idle: this.idleLru.size, leased, waiting: this.waiters.length, ...this.counters };
  }

  /** Refuses new acquires, fails the queue, closes idle connections now and lent ones when released (or after graceMs). */
  async close(graceMs = 5000): Promise<void> {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    for (const w of this.waiters.splice(0)) w.reject(new Error('ServerConnections is closed'));
    for (const slot of [...this.idleLru]) this.kill(slot, 'close');
    const deadline = Date.now() + graceMs;
    while ((this.slots.size > 0 || this.opening > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const slot of [...this.slots.values()]) this.kill(slot, 'close (forced)');
  }

  // ---------------------------------------------------------------- scheduling

  /** Serves queued waiters in FIFO order (skipping those whose tenant is at its cap) while connections can be had. */
  private pump(): void {
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i]!;
      if (!this.underTenantCap(w.creds.key)) { i++; continue; }
      // 1. same identity idle
      let slot = this.takeIdle(w.identity);
      if (slot) {
        this.counters.sameTenantHits++;
        this.serve(w, i);
        this.lend(slot, w.creds.key);
        w.resolve(slot.conn);
        continue;
      }
      const canOpen = this.slots.size + this.opening < this.opts.max;
      // 2. switch the least recently used idle connection of another tenant (3 first if openBeforeSwitch)
      slot = this.opts.openBeforeSwitch && canOpen ? undefined : this.takeLruIdle();
      if (slot) {
        this.serve(w, i);
        this.lend(slot, w.creds.key);
        this.switchTo(slot, w);
        continue;
      }
      // 3. open a new connection if under budget
      if (canOpen) {
        this.serve(w, i);
        this.incTenant(w.creds.key); // counts towards the tenant cap while opening
        this.open(w);
        continue;
      }
      return; // 4. stay queued
    }
  }

  private serve(w: Waiter, index: number): void {
    this.waiters.splice(index, 1);
    w.serving = true;
  }

  private switchTo(slot: Slot, w: Waiter): void {
    this.counters.switches++;
    const from = slot.tenantKey;
    slot.tenantKey = w.creds.key;
    slot.identity = ''; // unknown until changeUser succeeds: never matches an identity
    slot.creds = w.creds;
    this.changeUser(slot, w.creds, (err) => {
      if (err) {
        // MariaDB keeps the session alive AS THE PREVIOUS USER after a failed COM_CHANGE_USER: never reuse it.
        this.counters.switchFailures++;
        this.emitEvent('switch-failed', { from, to: w.creds.key, code: (err as any).code });
        slot.leased = false;
        this.decTenant(w.creds.key);
        this.kill(slot, 'changeUser failed');
        w.reject(toSequelizeError(err));
        this.pump();
        return;
      }
      slot.serverStatus = undefined;
      (this.initAfterSwitch ? this.runInit(slot.conn) : Promise.resolve()).then(
        () => { slot.identity = w.identity; w.resolve(slot.conn); },
        (e) => { slot.leased = false; this.decTenant(w.creds.key); this.kill(slot, 'session init failed'); w.reject(toSequelizeError(e)); this.pump(); },
      );
    });
  }

  /**
   * COM_CHANGE_USER with the connection's ORIGINAL character set. mysql2 follows the server's session-state tracking:
   * after a tenant's `SET NAMES latin1` it rewrites conn.config.charsetNumber, and changeUser() would then send latin1
   * in the COM_CHANGE_USER packet, handing the next tenant a latin1 session (observed in safety.ts). Passing the
   * handshake charset explicitly makes every switched session identical to a fresh one.
   */
  private changeUser(slot: Slot, creds: TenantCredentials, cb: (err: Error | null) => void): void {
    (slot.conn as any).config.charsetNumber = slot.charsetNumber0;
    slot.conn.changeUser({ user: creds.user, password: creds.password, database: creds.database }, (err) => cb(err ?? null));
  }

  private open(w: Waiter): void {
    this.opening++;
    this.counters.opens++;
    const conn = mysql.createConnection({
      ...this.opts.connectionOptions,
      host: this.opts.host, port: this.opts.port,
      user: w.creds.user, password: w.creds.password, database: w.creds.database,
    }) as Conn;
    const onConnectError = (err: Error) => {
      this.opening--;
      this.decTenant(w.creds.key);
      conn.destroy();
      w.reject(toSequelizeError(err));
      this.pump();
    };
    conn.once('error', onConnectError);
    conn.once('connect', (handshake: any) => {
      conn.removeListener('error', onConnectError);
      if (!this.serverVersion && handshake?.serverVersion) this.serverVersion = String(handshake.serverVersion).replace(/^5\.5\.5-/, '');
      const slot: Slot = {
        conn, identity: '', tenantKey: w.creds.key, leased: true, dead: false, lastUsed: Date.now(), retire: false, uses: 0,
        creds: w.creds, charsetNumber0: (conn as any).config.charsetNumber,
      };
      this.slots.set(conn, slot);
      this.opening--;
      this.instrument(slot);
      this.checkSkip(conn).then(() => this.runInit(conn)).then(
        () => {
          slot.identity = w.identity;
          slot.uses++;
          if (this.closed) { slot.leased = false; this.decTenant(w.creds.key); this.kill(slot, 'closed while opening'); w.reject(new Error('ServerConnections is closed')); return; }
          w.resolve(conn);
        },
        (e) => { slot.leased = false; this.decTenant(w.creds.key); this.kill(slot, 'session init failed'); w.reject(toSequelizeError(e)); this.pump(); },
      );
    });
  }

  /** Watches the connection: errors/end mark it dead; OK packets' serverStatus tells whether a transaction is open. */
  private instrument(slot: Slot): void {
    const { conn } = slot;
    const markDead = () => {
      if (slot.dead) return;
      slot.dead = true;
      if (!slot.leased) this.kill(slot, 'died while idle');
      this.pump();
    };
    conn.on('error', markDead); // also keeps an unhandled 'error' event from crashing the process
    conn.on('end', markDead);
    // Record the serverStatus of every OK packet (non-SELECT results). This wraps the two methods Sequelize's mysql
    // dialect calls: connection.query({sql}, cb) and connection.execute(sql, params, cb).
    const track = (cb: any) => (typeof cb !== 'function' ? cb : function (this: unknown, err: any, result: any, ...rest: any[]) {
      if (!err && result && typeof result === 'object' && !Array.isArray(result) && typeof result.serverStatus === 'number') slot.serverStatus = result.serverStatus;
      return cb.call(this, err, result, ...rest);
    });
    const origQuery = conn.query.bind(conn) as (...a: any[]) => any;
    const origExecute = conn.execute.bind(conn) as (...a: any[]) => any;
    (conn as any).query = (...args: any[]) => { const i = args.length - 1; args[i] = track(args[i]); return origQuery(...args); };
    (conn as any).execute = (...args: any[]) => { const i = args.length - 1; args[i] = track(args[i]); return origExecute(...args); };
  }

  private checkSkip(conn: Conn): Promise<void> {
    const expr = this.opts.sessionInitSkipWhen;
    if (!expr) return Promise.resolve();
    return new Promise((resolve, reject) => conn.query(`SELECT (${expr}) AS ok`, (err, rows: any) => {
      if (err) return reject(err);
      this.initAfterSwitch = !Number(rows?.[0]?.ok);
      resolve();
    }));
  }

  private runInit(conn: Conn): Promise<void> {
    const sql = this.opts.sessionInit;
    if (!sql) return Promise.resolve();
    return new Promise((resolve, reject) => conn.query(sql, (err) => (err ? reject(err) : resolve())));
  }

  private cleanDirty(slot: Slot): Promise<void> {
    this.counters.resets++;
    const { conn } = slot;
    if (this.opts.dirtyPolicy === 'destroy') return Promise.reject(new Error('dirty'));
    if (this.opts.dirtyPolicy === 'rollback') {
      return new Promise<void>((resolve, reject) => conn.query('ROLLBACK', (err) => (err ? reject(err) : resolve()))).then(() => { slot.serverStatus = undefined; });
    }
    // A same-user COM_CHANGE_USER: rolls back, drops temp tables, clears variables, re-authenticates; unlike
    // COM_RESET_CONNECTION (mysql2 conn.reset()) it also resynchronises mysql2's charset state (see changeUser()).
    // It is only paid on the (buggy) dirty path, never on a clean release.
    const identity = slot.identity;
    slot.identity = '';
    return new Promise<void>((resolve, reject) => this.changeUser(slot, slot.creds, (err) => (err ? reject(err) : resolve())))
      .then(() => { slot.serverStatus = undefined; return this.initAfterSwitch ? this.runInit(conn) : undefined; })
      .then(() => { slot.identity = identity; });
  }

  private reapIdle(): void {
    const cutoff = Date.now() - this.opts.idleMs;
    for (const slot of [...this.idleLru]) if (slot.lastUsed < cutoff) this.kill(slot, 'idle');
  }

  // ---------------------------------------------------------------- bookkeeping

  private takeIdle(identity: string): Slot | undefined {
    const list = this.idleByIdentity.get(identity);
    while (list && list.length > 0) {
      const slot = list.pop()!;
      if (list.length === 0) this.idleByIdentity.delete(identity);
      this.idleLru.delete(slot);
      if (this.usableIdle(slot)) return slot;
    }
    return undefined;
  }

  private takeLruIdle(): Slot | undefined {
    for (const slot of this.idleLru) {
      this.unpark(slot);
      if (this.usableIdle(slot)) return slot;
    }
    return undefined;
  }

  private usableIdle(slot: Slot): boolean {
    if (slot.dead || !isUsable(slot.conn)) {
      this.kill(slot, 'stale idle');
      return false;
    }
    return true;
  }

  private park(slot: Slot): void {
    let list = this.idleByIdentity.get(slot.identity);
    if (!list) this.idleByIdentity.set(slot.identity, (list = []));
    list.push(slot);
    this.idleLru.delete(slot);
    this.idleLru.add(slot);
  }

  private unpark(slot: Slot): void {
    this.idleLru.delete(slot);
    const list = this.idleByIdentity.get(slot.identity);
    if (!list) return;
    const i = list.indexOf(slot);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.idleByIdentity.delete(slot.identity);
  }

  private lend(slot: Slot, tenantKey: string): void {
    slot.leased = true;
    slot.uses++;
    slot.tenantKey = tenantKey;
    this.incTenant(tenantKey);
  }

  private kill(slot: Slot, why: string): void {
    if (!this.slots.has(slot.conn)) return;
    this.unpark(slot);
    this.slots.delete(slot.conn);
    slot.dead = true;
    this.counters.destroyed++;
    this.emitEvent('destroy', { tenant: slot.tenantKey, why, thread: slot.conn.threadId });
    // destroy(), not end(): end() would queue COM_QUIT behind a possibly hung command.
    slot.conn.destroy();
  }

  private underTenantCap(key: string): boolean {
    return (this.leasedByTenant.get(key) ?? 0) < this.opts.perTenantMax;
  }
  private incTenant(key: string): void {
    this.leasedByTenant.set(key, (this.leasedByTenant.get(key) ?? 0) + 1);
  }
  private decTenant(key: string): void {
    const n = (this.leasedByTenant.get(key) ?? 0) - 1;
    if (n <= 0) this.leasedByTenant.delete(key);
    else this.leasedByTenant.set(key, n);
  }
  private removeWaiter(w: Waiter): void {
    const i = this.waiters.indexOf(w);
    if (i >= 0) this.waiters.splice(i, 1);
  }
  private emitEvent(event: string, detail: Record<string, unknown>): void {
    this.opts.onEvent?.(event, detail);
  }
}

/** Same test as Sequelize's mysql ConnectionManager.validate(). */
export function isUsable(conn: Conn): boolean {
  return Boolean(conn) && !conn._fatalError && !conn._protocolError && !conn._closing && !conn.stream.destroyed;
}

function isDirty(slot: Slot): boolean {
  const s = slot.serverStatus;
  if (s === undefined) return false;
  return (s & SERVER_STATUS_IN_TRANS) !== 0 || (s & SERVER_STATUS_AUTOCOMMIT) === 0;
}

/** mysql2 connect/auth errors → the Sequelize errors its mysql ConnectionManager.connect() would throw. */
function toSequelizeError(err: any): Error {
  switch (err?.code) {
    case 'ECONNREFUSED': return new ConnectionRefusedError(err);
    case 'ER_ACCESS_DENIED_ERROR':
    case 'ER_DBACCESS_DENIED_ERROR': return new AccessDeniedError(err);
    case 'ENOTFOUND': return new HostNotFoundError(err);
    case 'EHOSTUNREACH': return new HostNotReachableError(err);
    case 'EINVAL': return new InvalidConnectionError(err);
    default: return new ConnectionError(err);
  }
}

// ==================================================================== Sequelize integration

/**
 * The mysql2 options Sequelize's mysql ConnectionManager.connect() would use for this instance (so connections made by
 * ServerConnections parse and format values exactly like Sequelize's own). Every tenant instance sharing a
 * ServerConnections must agree on them (timezone, dialectOptions); attachSequelize() checks the timezone.
 */
export function sequelizeConnectionOptions(sequelize: Sequelize): { connectionOptions: mysql.ConnectionOptions; sessionInit?: string } {
  const cm = (sequelize as any).connectionManager;
  const config = (sequelize as any).config;
  const options = (sequelize as any).options;
  const connectionOptions: mysql.ConnectionOptions = {
    // Sequelize uses '-FOUND_ROWS'. '-IGNORE_SPACE' is ours: MariaDB turns the CLIENT_IGNORE_SPACE handshake flag into
    // sql_mode IGNORE_SPACE on a NEW session but not after COM_CHANGE_USER (observed in safety.ts), so without it a
    // session's sql_mode would depend on whether it was opened or switched.
    flags: ['-FOUND_ROWS', '-IGNORE_SPACE'],
    timezone: options.timezone,
    typeCast: cm.constructor._typecast.bind(cm),
    bigNumberStrings: false,
    supportBigNumbers: true,
    ...config.dialectOptions,
  };
  // Sequelize's connect() runs this on every new connection; COM_CHANGE_USER resets it, so the router re-runs it.
  // (Named zones like 'Europe/Paris' would need moment-tz's offset, as Sequelize does; the app uses '+00:00'.)
  const sessionInit = config.keepDefaultTimezone ? undefined : `SET time_zone = '${options.timezone as string}'`;
  return { connectionOptions, sessionInit };
}

export interface AttachedPoolStats { size: number; using: number; available: number; waiting: number }

export class LeaseRevokedError extends Error {
  readonly code = 'MUX_LEASE_REVOKED';
}

/**
 * What Sequelize gets instead of the raw mysql2 connection: one object per lease, forwarding the only members
 * Sequelize 6's mysql dialect uses on a connection it did not create itself (query, execute, uuid). Once the lease is
 * released or destroyed the handle is revoked, so a stale reference (e.g. a Transaction whose connection was released
 * by a bug) fails with LeaseRevokedError instead of running SQL in whatever tenant's session now owns the connection.
 */
export class LeaseHandle {
  /** Set by Sequelize's Transaction (transaction id) while it holds the connection. */
  uuid: string | undefined;
  constructor(private raw: Conn | undefined, readonly tenantKey: string) {}
  get threadId(): number | null | undefined { return this.raw?.threadId; }
  get revoked(): boolean { return this.raw === undefined; }
  /** @internal */ revoke(): Conn | undefined { const r = this.raw; this.raw = undefined; return r; }
  query(...args: any[]): any { return this.raw ? (this.raw.query as any)(...args) : revokedCall(args, this.tenantKey); }
  execute(...args: any[]): any { return this.raw ? (this.raw.execute as any)(...args) : revokedCall(args, this.tenantKey); }
}

function revokedCall(args: any[], tenantKey: string): EventEmitter {
  const cb = args[args.length - 1];
  const err = new LeaseRevokedError(`connection lease of ${tenantKey} was already released; statement refused`);
  const emitter = new EventEmitter(); // Sequelize calls .setMaxListeners(100) on the return value
  if (typeof cb === 'function') process.nextTick(cb, err);
  return emitter;
}

/**
 * Routes one tenant Sequelize instance's connections through `router`.
 *
 * Internals relied on (Sequelize 6.x, lib/dialects/abstract/connection-manager.js):
 *   - `sequelize.connectionManager.pool` is replaced. AbstractConnectionManager.getConnection() calls
 *     `this.pool.acquire(options.type, options.useMaster)` (wrapped in the beforePoolAcquire/afterPoolAcquire hooks,
 *     a sequelize-pool TimeoutError would become ConnectionAcquireTimeoutError; we throw that one directly),
 *     releaseConnection() calls `this.pool.release(conn)`, destroyConnection() `await this.pool.destroy(conn)`,
 *     close() → _onProcessExit() `await this.pool.drain(); await this.pool.destroyAllNow()`.
 *   - getConnection() opens a private connection for a version probe while `sequelize.options.databaseVersion === 0`:
 *     we set it (public `databaseVersion` constructor option) so that probe never runs.
 *   - On the connection object Sequelize's mysql dialect only calls `query({sql}, cb)` / `execute(sql, params, cb)`
 *     (lib/dialects/mysql/query.js) and reads/writes `uuid` (transaction.js): a LeaseHandle provides exactly those.
 *   - Sequelize's mysql2 `typeCast` is `connectionManager.constructor._typecast` bound to the connection manager; it is
 *     set on the lent connection's config at each acquire so row parsing uses this instance's options.
 *   - The original sequelize-pool created in the constructor stays unused (it opens nothing and starts no timer).
 * Never called: the mysql dialect's connect()/disconnect()/validate() (the router makes and checks its connections).
 */
export function attachSequelize(sequelize: Sequelize, router: ServerConnections, creds: TenantCredentials): AttachedPoolStats {
  const s = sequelize as any;
  const cm = s.connectionManager;
  if (s.options.dialect !== 'mysql') throw new Error('attachSequelize: mysql dialect only');
  if (s.options.replication) throw new Error('attachSequelize: replication is not supported');
  const routerTz = router.opts.connectionOptions?.timezone;
  if (routerTz !== undefined && routerTz !== s.options.timezone) {
    throw new Error(`attachSequelize: timezone ${s.options.timezone} differs from the router's ${routerTz}`);
  }
  if (s.options.databaseVersion === 0) s.options.databaseVersion = router.serverVersion ?? cm.dialect.defaultVersion;
  const typeCast = cm.constructor._typecast.bind(cm);
  const lent = new Set<LeaseHandle>();
  let drainWaiters: Array<() => void> = [];
  let pendingAcquires = 0;
  const settle = () => {
    if (lent.size === 0 && pendingAcquires === 0) { const w = drainWaiters; drainWaiters = []; w.forEach((f) => f()); }
  };
  let draining = false;

  const pool = {
    name: `mux:${creds.key}`,
    async acquire(_type?: string, _useMaster?: boolean): Promise<LeaseHandle> {
      if (draining) throw new Error('pool is draining and cannot accept work');
      pendingAcquires++;
      try {
        const conn = await router.acquire(creds);
        (conn as any).config.typeCast = typeCast;
        const handle = new LeaseHandle(conn, creds.key);
        lent.add(handle);
        return handle;
      } catch (err) {
        if (err instanceof AcquireTimeoutError || err instanceof QueueFullError) throw new ConnectionAcquireTimeoutError(err);
        throw err;
      } finally {
        pendingAcquires--;
        settle();
      }
    },
    release(handle: LeaseHandle): void {
      if (!lent.delete(handle)) return; // not ours or already released: never touch another lease
      const conn = handle.revoke();
      if (conn) router.release(conn);
      settle();
    },
    async destroy(handle: LeaseHandle): Promise<void> {
      if (!lent.delete(handle)) return;
      const conn = handle.revoke();
      if (conn) router.destroy(conn);
      settle();
    },
    async drain(): Promise<void> {
      draining = true;
      if (lent.size === 0 && pendingAcquires === 0) return;
      await new Promise<void>((r) => drainWaiters.push(r));
    },
    async destroyAllNow(): Promise<void> {
      // The physical connections belong to the router; anything still lent is destroyed (as sequelize-pool does).
      for (const h of [...lent]) { lent.delete(h); const c = h.revoke(); if (c) router.destroy(c); }
    },
    get size() { return lent.size; },
    get using() { return lent.size; },
    get available() { return 0; },
    get waiting() { return pendingAcquires; },
  };
  cm.pool = pool;
  return pool;
}
