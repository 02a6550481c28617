/**
 * The physical connections of this process to one MySQL server, shared by every tenant on it (multiplexing, the way
 * ProxySQL does it). At most `max` raw mysql2 connections are open, whatever the number of tenants; each is lent
 * authenticated as one tenant's own MySQL user with its database selected:
 *   1. an idle session of exactly these credentials: no I/O;
 *   2. else a new connection while fewer than `max` are open or opening (the idle sessions stay parked for their tenants);
 *   3. else, when a session of this tenant is lent, a wait of up to `switchWaitMs` for it to come back (a switch costs
 *      about as much CPU as the request);
 *   4. else the idle session of the coldest other tenant (least requests lately, a decayed count; ties: least recently
 *      used), switched with COM_CHANGE_USER (+ the session init, unless the tenant's account and the server
 *      already set it: `sessionCheck`): under skewed traffic the busy tenants keep their sessions;
 *   5. else the caller waits (FIFO, skipping tenants at their own cap) until `acquireTimeoutMs`.
 * Never a mysql2 Pool: `changeUser` on a pooled connection rewrites the pool's config (node-mysql2 #477, #1469).
 *
 * Safety rules (proved on MariaDB 10.11, docs/design/connection-multiplexing.md):
 * - A session changes tenant only through a successful COM_CHANGE_USER, which rolls back an open transaction and resets
 *   variables, temporary tables, named locks and prepared statements. A FAILED change leaves MariaDB's session
 *   authenticated as the previous tenant: that connection is destroyed, never reused.
 * - A session given back with a transaction open or autocommit off ("dirty", from the last OK packet) is reset with a
 *   same-user COM_CHANGE_USER before anyone (even the same tenant) gets it again.
 * - A connection that errored or ended is never lent again.
 *
 * Every wait on the server is bounded (server-health.ts, answer-deadline.ts): a new connection by mysql2's
 * connectTimeout, a COM_CHANGE_USER by `answerTimeoutMs`, a statement by `statementDeadlineMs`. A statement unanswered
 * for `probeAfterMs`, or one connection reset, makes the process probe the server; the server is marked down when a
 * probe, a new connection or a COM_CHANGE_USER gets no answer, and then its tenants get 503 at once (no connection
 * waits on it) until a probe, every `retryAfterMs`, succeeds.
 */
import { EventEmitter } from 'node:events';
import { LRUCache } from 'lru-cache';
import mysql from 'mysql2';
import { shuttingDown, unavailable } from '../lib/errors.js';
import { answerWithin, type AnswerDeadline, type InFlight } from './answer-deadline.js';
import { createServerHealth } from './server-health.js';
import { canSwitchBehind, switchUser, type AnswerHolder, type HeldAnswer } from './switch-user.js';

const SERVER_STATUS_IN_TRANS = 0x0001;
const SERVER_STATUS_AUTOCOMMIT = 0x0002;

/** Who a session is for: the tenant (org id) and its own MySQL login. */
export interface TenantLogin {
  key: string;
  user: string;
  password: string;
  database: string;
}

/** A raw mysql2 connection, with the internal flags mysql2 sets when it can no longer be used. */
export type RawConnection = mysql.Connection & {
  _fatalError?: unknown;
  _protocolError?: unknown;
  _closing?: boolean;
  stream: { destroyed: boolean };
};

export interface ServerConnectionsOptions {
  host: string;
  port: number;
  /** Physical connections to this server from this process (TENANT_CONNECTIONS_MAX). */
  max: number;
  /** Connections lent to one tenant at once (TENANT_POOL_MAX): one busy tenant never takes the whole budget. */
  perTenantMax: number;
  /** How long acquire() may wait, queueing and switching included. */
  acquireTimeoutMs: number;
  /**
   * At the budget, a tenant whose own session is lent waits this long for it to come back before another tenant's
   * idle session is switched for it (TENANT_SWITCH_WAIT_MS; 0: switch at once).
   */
  switchWaitMs?: number;
  /** Idle connections older than this are closed (keep below the server's wait_timeout). */
  idleMs: number;
  /**
   * After the server could not be reached or stopped answering, acquires fail at once (503) instead of each timing
   * out, and the server is probed again this often until it answers (TENANT_RETRY_AFTER_MS; 0: never marked down).
   */
  retryAfterMs: number;
  /** Longest wait for COM_CHANGE_USER and for a probe (TENANT_CONNECT_TIMEOUT_MS); unset: unbounded. */
  answerTimeoutMs?: number;
  /** Longest wait for one statement's answer: the server's own statement timeout plus a margin; unset: unbounded. */
  statementDeadlineMs?: number;
  /** A statement unanswered this long makes the process probe the server (TENANT_PROBE_AFTER_MS). */
  probeAfterMs?: number;
  /** mysql2 options of every connection (timezone, typeCast, connectTimeout…). */
  connectionOptions: mysql.ConnectionOptions;
  /** SQL run on every new, switched or reset session (COM_CHANGE_USER resets session variables); from the server version. */
  sessionInit(serverVersion: string): string | undefined;
  /**
   * How to tell that a tenant's sessions need no init: its account and the server already set what the init sets
   * (MariaDB applies a per-user MAX_STATEMENT_TIME at login and at COM_CHANGE_USER; a server running in UTC). Read once
   * per login (the first session made or switched for it); when it holds, that login's sessions skip the init round trip.
   */
  sessionCheck?(serverVersion: string): SessionCheck | undefined;
  onEvent?(event: 'switch-failed' | 'dirty-release' | 'server-down' | 'server-up', detail: Record<string, unknown>): void;
  /** Opens a connection (mysql2's createConnection; the unit tests pass a fake). */
  connect?: (options: mysql.ConnectionOptions) => RawConnection;
}

/** A read of a fresh session's variables, and whether they already are what the session init would set. */
export interface SessionCheck {
  sql: string;
  holds(row: Record<string, unknown>): boolean;
}

export interface ServerConnectionsStats {
  open: number;
  opening: number;
  idle: number;
  leased: number;
  waiting: number;
  acquires: number;
  sameTenantHits: number;
  switches: number;
  opens: number;
  resets: number;
  destroyed: number;
  timeouts: number;
  switchFailures: number;
  /** Switches whose session's first statement (one that writes nothing) left in one write with the switch's answer. */
  pipelined: number;
  /**
   * Switches sent in one write with the previous tenant's last statement on the session, while a request of another
   * tenant waited for a connection (`lastOnLease`): the switch's first round trip rides on that statement's.
   */
  behind: number;
  /** Session inits run, and sessions that needed none (their login's account already sets it). */
  inits: number;
  initsSkipped: number;
  /** Whether the server counts as down now; times it was marked down; probes made and failed. */
  down: boolean;
  downs: number;
  probes: number;
  probeFailures: number;
}

export interface ServerConnections {
  /** A connection authenticated as `login`; give it back with release() or destroy(). */
  acquire(login: TenantLogin): Promise<RawConnection>;
  /**
   * acquire()'s fast path, synchronous: an idle session of exactly this tenant when nobody queues and the tenant is
   * under its cap, else undefined (then acquire(), which may queue or switch).
   */
  tryAcquire(login: TenantLogin): RawConnection | undefined;
  release(conn: RawConnection): void;
  /** Closes a lent connection whose state is unknown (after an error). */
  destroy(conn: RawConnection): void;
  /** The tenant's credentials changed or it was dropped: idle sessions close now, lent ones when given back. */
  evictTenant(key: string): void;
  stats(): ServerConnectionsStats;
  /** Refuses new acquires and fails the queue; lent connections close when given back, or after `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

/** Raised when no connection could be had within acquireTimeoutMs (the pool cache maps it to 503). */
export class ConnectionBudgetTimeoutError extends Error {
  override readonly name = 'ConnectionBudgetTimeoutError';
  readonly code = 'TENANT_CONNECTION_TIMEOUT';
}

interface Slot {
  conn: RawConnection;
  /** Identity of the authenticated session ('' while unknown: matches nobody). */
  identity: string;
  login: TenantLogin;
  leased: boolean;
  dead: boolean;
  retire: boolean;
  /** serverStatus of the last OK packet since the session was (re)initialised. */
  serverStatus?: number;
  lastUsed: number;
  /** Character set of the handshake, restored before each COM_CHANGE_USER (mysql2 follows `SET NAMES`). */
  charsetNumber: number;
  /** Commands sent and not answered yet: failed at once when the server goes down. */
  inFlight: InFlight;
  /**
   * Statements marked `preparedWhenRepeated` this session ran as text since its login was last set: the next run of one
   * is prepared (mysql2 keeps it until the next COM_CHANGE_USER, which forgets every prepared statement).
   */
  textRuns: Set<string>;
  /** The bounds on each statement's answer (statementDeadlineMs) and each switch's (answerTimeoutMs), made once. */
  statementDeadline?: AnswerDeadline;
  switchDeadline?: AnswerDeadline;
  /**
   * A switch's answer to MariaDB's auth switch, not written yet: the session was lent before the switch's OK, and the
   * answer leaves with its first statement (or alone, if none comes before the next turn of the event loop).
   */
  held?: HeldAnswer;
  /** A switch to a waiting tenant sent behind the last statement of the tenant still holding the session. */
  handoff?: Handoff;
}

/**
 * A statement's option (lean-query's INSERTs): run it as a prepared statement on a session that already ran it since its
 * login was set, as text otherwise. A prepared INSERT skips the server's parse and mysql2's escaping (15 % less database
 * CPU per POST /messages on one tenant), but right after a switch preparing would cost a round trip more than it saves.
 */
export interface PreparedWhenRepeated {
  sql: string;
  preparedWhenRepeated?: boolean;
  /**
   * The statement writes nothing (lean-query's selects): on a session lent before its switch was confirmed, it may be
   * sent with the switch's last packet. Should the switch fail, MariaDB runs it as the previous tenant (it can read only
   * what that tenant may read) and its answer is never read: the connection fails first (switch-user.ts).
   */
  readOnly?: boolean;
  /**
   * The lease ends when this statement is answered: nothing else is sent on it (lean-query's one-statement leases; the
   * lease handle refuses anything after it). While another tenant waits for a connection, its switch may then leave in
   * the same write as this statement.
   */
  lastOnLease?: boolean;
}
/** How many such statements a session remembers (mysql2 keeps maxPreparedStatements: 16 on tenant connections). */
const TEXT_RUNS_MAX = 16;

interface Waiter {
  login: TenantLogin;
  identity: string;
  settled: boolean;
  /** Out of the queue: a switch or an open is under way for it. */
  serving: boolean;
  /** Already put back in the queue once after its connection died under it. */
  retried?: boolean;
  timer: NodeJS.Timeout;
  /** When it was queued (performance.now()). */
  since: number;
  resolve(conn: RawConnection): void;
  reject(err: Error): void;
}

/** Half-life of a tenant's heat (its decayed count of acquires), which picks the idle session a switch takes. */
const HEAT_HALF_LIFE_MS = 2000;
/** Heats closer than this count as equal (the least recently used session is taken). */
const HEAT_TIE = 0.01;
/** Tenants whose heat is remembered (most recently seen): a bound whatever the number of tenants. */
const HEAT_MAX = 4096;

const identityOf = (l: TenantLogin) => `${l.user}\u0000${l.database}\u0000${l.password}`;

/** Same test as Sequelize's mysql ConnectionManager.validate(). */
export const isUsable = (c: RawConnection) => !c._fatalError && !c._protocolError && !c._closing && !c.stream.destroyed;

const isDirty = (s: number | undefined) => s !== undefined && ((s & SERVER_STATUS_IN_TRANS) !== 0 || (s & SERVER_STATUS_AUTOCOMMIT) === 0);

/** A new connection failed this way: the server, not the tenant's login, is the problem. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** One connection died (the server may be fine): that connection is gone, the server is probed. */
const CONNECTION_LOST = new Set(['ECONNRESET', 'EPIPE', 'PROTOCOL_CONNECTION_LOST']);
const codeOf = (err: unknown) => (err as { code?: unknown } | null)?.code;
/** Node's and mysql2's own codes, given to errors of our making that mean the same (never an HTTP error code). */
const NODE_TIMEOUT = 'ETIMEDOUT';
const MYSQL2_CONNECTION_LOST = 'PROTOCOL_CONNECTION_LOST';

const loginOptions = (l: TenantLogin) => ({ user: l.user, password: l.password, database: l.database });

const run = (conn: RawConnection, sql: string) =>
  new Promise<void>((resolve, reject) => conn.query(sql, (err) => (err ? reject(err) : resolve())));
const firstRow = (conn: RawConnection, sql: string) =>
  new Promise<Record<string, unknown>>((resolve, reject) =>
    conn.query(sql, (err, rows) => (err ? reject(err) : resolve((rows as Record<string, unknown>[])[0] ?? {}))),
  );

/**
 * A switch sent behind the last statement of the tenant holding a session (`lastOnLease`), for the waiter that would
 * have switched the next session given back. The session stays its holder's until the holder gives it back (release
 * or destroy); only then is it the waiter's, and only then is it lent to the waiter, even when MariaDB's answer to the
 * switch came first: one connection is never in two leases.
 */
class Handoff {
  /** 'sent': the holder has the session; 'handed': the waiter has it (or will, when the switch is done); 'cancelled'. */
  state: 'sent' | 'handed' | 'cancelled' = 'sent';
  /** The switch got far enough to lend the session (auth switch held, or OK and init) while the holder still had it. */
  lendable = false;
  /** The waiter's tenant was evicted meanwhile: its session closes when given back. */
  retire = false;
  /** The switch's callback: bounded by answerTimeoutMs from the hand-over (the statement before it has its own bound). */
  private answer: (err: unknown) => unknown = () => undefined;
  private answered = false;
  readonly finish = (err: Error | null): void => {
    this.answered = true;
    this.answer(err);
  };

  constructor(readonly w: Waiter) {}

  listen(answer: (err: unknown) => unknown): void {
    this.answer = answer;
  }

  /** Starts the switch's deadline, unless it has been answered already. */
  arm(inFlight: InFlight, deadline: AnswerDeadline | undefined): void {
    if (!this.answered && deadline) this.answer = answerWithin(this.answer, inFlight, deadline);
  }
}

export function createServerConnections(opts: ServerConnectionsOptions): ServerConnections {
  const slots = new Map<RawConnection, Slot>();
  const idleByIdentity = new Map<string, Slot[]>(); // most recently released last
  const idleLru = new Set<Slot>(); // least recently released first: the victims of a switch
  const leasedByTenant = new Map<string, number>();
  /** Each tenant's heat at `at` (most recently seen last): how many acquires it made lately. */
  const heat = new LRUCache<string, { value: number; at: number }>({ max: HEAT_MAX });
  const waiters: Waiter[] = [];
  const counters = {
    acquires: 0,
    sameTenantHits: 0,
    switches: 0,
    opens: 0,
    resets: 0,
    destroyed: 0,
    timeouts: 0,
    switchFailures: 0,
    pipelined: 0,
    behind: 0,
    inits: 0,
    initsSkipped: 0,
  };
  let opening = 0;
  let closed = false;
  let initSql: string | undefined;
  let check: SessionCheck | undefined;
  /**
   * Per login (the object a tenant instance passes on every acquire, so this lives exactly as long as it): 'set' when
   * its account and the server already set what the init sets, 'init' when each session needs the init.
   */
  const sessionState = new WeakMap<TenantLogin, 'set' | 'init'>();

  /** Makes a session just logged in or switched as `login` what every tenant session must be (init, unless not needed). */
  async function initialise(conn: RawConnection, login: TenantLogin): Promise<void> {
    if (!initSql) return;
    let state = sessionState.get(login);
    if (state === undefined) {
      state = check && check.holds(await firstRow(conn, check.sql)) ? 'set' : 'init';
      sessionState.set(login, state);
    }
    if (state === 'set') {
      counters.initsSkipped++;
      return;
    }
    counters.inits++;
    await run(conn, initSql);
  }
  /** The login of the latest acquire: what a probe logs in as. */
  let lastLogin: TenantLogin | undefined;
  const health = createServerHealth({
    retryAfterMs: opts.retryAfterMs,
    probe: () => probe(),
    onDown(cause) {
      opts.onEvent?.('server-down', { host: opts.host, port: opts.port, code: codeOf(cause), err: cause.message });
      // Nothing may wait on a server that does not answer: the queue and every command in flight fail now.
      const err = downError(cause);
      for (const w of waiters.splice(0)) w.reject(err);
      for (const slot of [...slots.values()]) {
        for (const abort of [...slot.inFlight]) abort(err);
        abandon(slot);
      }
    },
    onUp: () => opts.onEvent?.('server-up', { host: opts.host, port: opts.port }),
  });

  /** Every failure to make or switch a session is a 503 for this tenant, with its cause for the log. */
  function failure(err: Error & { code?: string }): Error {
    // A new connection refused or unanswered: the server is down (those queued fail now too).
    if (err.code && UNREACHABLE.has(err.code)) health.markDown(err);
    return unavailable('TENANT_DB_UNAVAILABLE', 'the organisation database is unavailable', health.retryAfterMs(), err);
  }
  /** The 503 of a down server; `fatal` so that whoever holds the connection gives it up. */
  const downError = (cause?: Error) =>
    Object.assign(unavailable('TENANT_DB_UNAVAILABLE', 'the organisation database is unavailable', health.retryAfterMs(), cause), {
      fatal: true,
    });

  /** A wait on the server ran out: the connection is given up at once (its socket too: it may never close). */
  const timedOut = (what: string, ms: number) =>
    Object.assign(new Error(`${opts.host}:${opts.port} did not answer ${what} within ${ms} ms`), { code: NODE_TIMEOUT, fatal: true });
  function abandon(slot: Slot): void {
    slot.dead = true;
    (slot.conn.stream as { destroy?: () => void }).destroy?.();
    if (!slot.leased) kill(slot);
  }

  /** Logs in with a fresh connection and pings. Any answer, even an error packet, shows the server is alive. */
  function probe(): Promise<void> {
    const login = lastLogin;
    const ms = opts.answerTimeoutMs ?? 2000;
    if (!login) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let conn: RawConnection | undefined;
      const done = (err?: unknown) => {
        clearTimeout(timer);
        // A clean COM_QUIT after a good ping (no "aborted connection" in the server's log); otherwise cut.
        if (err === undefined && conn) conn.end(() => undefined);
        else {
          (conn?.stream as { destroy?: () => void } | undefined)?.destroy?.();
          conn?.destroy();
        }
        // A server error packet (access denied, too many connections…) carries an SQL state: the server answered.
        if (err === undefined || typeof (err as { sqlState?: unknown }).sqlState === 'string') resolve();
        else reject(err instanceof Error ? err : new Error('the probe failed'));
      };
      const timer = setTimeout(() => done(timedOut('a probe', ms)), ms);
      try {
        const connect = opts.connect ?? ((o: mysql.ConnectionOptions) => mysql.createConnection(o) as RawConnection);
        conn = connect({ ...opts.connectionOptions, host: opts.host, port: opts.port, ...loginOptions(login), connectTimeout: ms });
        conn.on('error', done);
        conn.once('connect', () => {
          try {
            conn!.ping((err) => done(err ?? undefined));
          } catch (err) {
            done(err);
          }
        });
      } catch (err) {
        done(err);
      }
    });
  }

  const reaper = setInterval(
    () => {
      const cutoff = Date.now() - opts.idleMs;
      for (const slot of [...idleLru]) if (slot.lastUsed < cutoff) kill(slot);
    },
    Math.min(opts.idleMs, 1000),
  );
  reaper.unref();

  const switchWaitMs = opts.switchWaitMs ?? 0;
  let repump: NodeJS.Timeout | undefined;

  const underCap = (key: string) => (leasedByTenant.get(key) ?? 0) < opts.perTenantMax;
  const inc = (key: string) => leasedByTenant.set(key, (leasedByTenant.get(key) ?? 0) + 1);
  function dec(key: string): void {
    const n = (leasedByTenant.get(key) ?? 0) - 1;
    if (n > 0) leasedByTenant.set(key, n);
    else leasedByTenant.delete(key);
  }

  function park(slot: Slot): void {
    let list = idleByIdentity.get(slot.identity);
    if (!list) idleByIdentity.set(slot.identity, (list = []));
    list.push(slot);
    idleLru.add(slot);
  }

  function unpark(slot: Slot): void {
    idleLru.delete(slot);
    const list = idleByIdentity.get(slot.identity);
    const i = list ? list.indexOf(slot) : -1;
    if (i < 0) return;
    list!.splice(i, 1);
    if (list!.length === 0) idleByIdentity.delete(slot.identity);
  }

  const heatOf = (key: string, now: number) => {
    const h = heat.peek(key);
    return h ? h.value * 2 ** (-(now - h.at) / HEAT_HALF_LIFE_MS) : 0;
  };
  function warm(key: string): void {
    const now = Date.now();
    const value = heatOf(key, now) + 1;
    heat.set(key, { value, at: now }); // the least recently seen tenant beyond HEAT_MAX is forgotten
  }

  /**
   * The idle session a switch should take: its tenant's heat is the lowest (ties: least recently used). Heats within a
   * hundredth of an acquire are ties: two tenants seen once a millisecond apart are equally cold.
   */
  function coldestIdle(): Slot | undefined {
    const now = Date.now();
    let best: Slot | undefined;
    let bestHeat = Infinity;
    for (const slot of idleLru) {
      const h = heatOf(slot.login.key, now);
      if (h < bestHeat - HEAT_TIE) [best, bestHeat] = [slot, h];
    }
    return best;
  }

  /** An idle session of this identity, or of anyone (the coldest tenant's) when identity is undefined. */
  function takeIdle(identity?: string): Slot | undefined {
    for (;;) {
      const slot = identity === undefined ? coldestIdle() : idleByIdentity.get(identity)?.at(-1);
      if (!slot) return undefined;
      unpark(slot);
      if (!slot.dead && isUsable(slot.conn)) return slot;
      kill(slot);
    }
  }

  function lend(slot: Slot, login: TenantLogin): void {
    slot.leased = true;
    slot.login = login;
    inc(login.key);
  }

  /** Gives up a slot that was lent (or being prepared) for `key`. */
  function unlend(slot: Slot, key: string): void {
    slot.leased = false;
    dec(key);
  }

  /** A connection that cannot serve again: destroyed now if idle, else when its holder gives it back. */
  function markDead(slot: Slot): void {
    slot.dead = true;
    if (!slot.leased) kill(slot);
  }

  function kill(slot: Slot): void {
    if (!slots.delete(slot.conn)) return;
    unpark(slot);
    slot.dead = true;
    slot.held = undefined;
    counters.destroyed++;
    // destroy(), not end(): end() would queue COM_QUIT behind a command that may hang.
    slot.conn.destroy();
  }

  /**
   * Whether a waiter leaves the idle sessions of others alone for now: its tenant has a session lent (back within a
   * statement under load), and it has waited less than `switchWaitMs`. A switch costs the API and the database about
   * as much CPU as the request itself; a short wait costs latency only. Pumped again when the wait is over.
   */
  function waitsForOwn(w: Waiter): boolean {
    if (switchWaitMs <= 0 || !leasedByTenant.has(w.login.key)) return false;
    const left = w.since + switchWaitMs - performance.now();
    if (left <= 0) return false;
    repump ??= setTimeout(() => {
      repump = undefined;
      pump();
    }, Math.ceil(left));
    return true;
  }

  /** Serves queued waiters in FIFO order while connections can be had. */
  function pump(): void {
    for (let i = 0; i < waiters.length;) {
      const w = waiters[i]!;
      if (!underCap(w.login.key)) {
        i++;
        continue;
      }
      const same = takeIdle(w.identity);
      if (same) {
        counters.sameTenantHits++;
        waiters.splice(i, 1);
        lend(same, w.login);
        w.resolve(same.conn);
        continue;
      }
      // Room in the budget: a connection of its own, so that the idle sessions stay parked for their tenants (a
      // larger budget then means fewer switches: docs/benchmarks.md, the fleet). At the budget: switch the coldest
      // tenant's idle session.
      if (slots.size + opening < opts.max) {
        waiters.splice(i, 1);
        w.serving = true;
        open(w);
        continue;
      }
      if (waitsForOwn(w)) {
        i++;
        continue;
      }
      const other = takeIdle();
      if (other) {
        waiters.splice(i, 1);
        w.serving = true;
        lend(other, w.login);
        switchTo(other, w);
        continue;
      }
      return;
    }
  }

  /**
   * A session (re)initialised as `login`, then lent to the waiter; any failure destroys the connection. A session lent
   * `early` (at the auth switch) is its holder's by now: a failure reaches the holder through its statement.
   */
  function ready(slot: Slot, w: Waiter, step: Promise<void>, early?: EarlyLend, h?: Handoff): void {
    step
      .then(() => (early?.lent || h?.state === 'cancelled' ? undefined : initialise(slot.conn, w.login)))
      .then(
        () => {
          if (early?.lent || h?.state === 'cancelled') return;
          slot.identity = w.identity;
          slot.serverStatus = undefined;
          if (closed) throw shuttingDown('tenant connections are closing');
          if (h?.state === 'sent')
            h.lendable = true; // lent when its holder gives it back
          else w.resolve(slot.conn);
        },
        (err: Error) => {
          if (h?.state === 'cancelled') return;
          if (h?.state === 'sent') return switchBehindFailed(slot, h, err);
          if (early?.lent) {
            if (CONNECTION_LOST.has(String(codeOf(err)))) health.suspect();
            markDead(slot);
            return;
          }
          unlend(slot, w.login.key);
          kill(slot);
          if (!retryAfterLostConnection(w, err)) w.reject(failure(err));
          pump();
        },
      )
      .catch((err: Error) => {
        if (h?.state === 'cancelled') return;
        if (h?.state === 'sent') return switchBehindFailed(slot, h, err);
        unlend(slot, w.login.key);
        kill(slot);
        w.reject(err);
      });
  }

  /**
   * A switch sent behind a statement failed before the statement's holder gave the session back: the holder keeps it
   * (dead: closed when given back), the waiter is served again or fails as after any failed switch.
   */
  function switchBehindFailed(slot: Slot, h: Handoff, err: Error): void {
    dropHandoff(slot, h);
    slot.held = undefined; // an answer held for the waiter: never sent on a connection that is going
    if (CONNECTION_LOST.has(String(codeOf(err)))) health.suspect();
    markDead(slot);
    if (!retryAfterLostConnection(h.w, err)) h.w.reject(failure(err));
    pump();
  }

  /** The handoff is over for its waiter: no longer counted as its tenant's, no longer the slot's. */
  function dropHandoff(slot: Slot, h: Handoff): void {
    h.state = 'cancelled';
    if (slot.handoff === h) slot.handoff = undefined;
    dec(h.w.login.key);
  }

  /** The connection of a handoff cannot serve (its holder lost it): the waiter goes back to the head of the queue. */
  function cancelHandoff(slot: Slot, h: Handoff): void {
    dropHandoff(slot, h);
    const w = h.w;
    if (w.settled) return;
    if (closed) return w.reject(shuttingDown('tenant connections are closing'));
    if (health.isDown()) return w.reject(downError());
    w.serving = false;
    waiters.unshift(w);
  }

  /**
   * The holder of a session with a handoff gave it back: the session is now the waiter's, lent to it at once when its
   * switch got that far (else when it does, in ready()). Not parked, so nobody else can take it meanwhile.
   */
  function handOver(slot: Slot, h: Handoff): void {
    slot.handoff = undefined;
    dec(slot.login.key);
    if (slot.dead || closed || !isUsable(slot.conn)) {
      cancelHandoff(slot, h);
      slot.leased = false;
      kill(slot);
      pump();
      return;
    }
    h.state = 'handed';
    slot.login = h.w.login;
    slot.retire = h.retire;
    slot.lastUsed = Date.now();
    h.arm(slot.inFlight, slot.switchDeadline);
    if (h.lendable) {
      if (slot.held !== undefined) setImmediate(sendHeld, slot);
      h.w.resolve(slot.conn);
    }
    pump(); // the holder's tenant is one lease under its cap: a waiter of it may now take an idle session
  }

  /**
   * The first waiter that the session being given back after its statement would switch to (pump()'s choice, made one
   * round trip early), taken out of the queue; undefined when the holder's own tenant is first in line (no switch) or
   * none would switch.
   */
  function nextToSwitch(slot: Slot): Waiter | undefined {
    for (let i = 0; i < waiters.length; i++) {
      const w = waiters[i]!;
      // The holder's own tenant first in line (even at its cap, which the release lowers): no switch.
      if (w.login.key === slot.login.key) return undefined;
      if (!underCap(w.login.key)) continue;
      if (waitsForOwn(w)) continue;
      waiters.splice(i, 1);
      return w;
    }
    return undefined;
  }

  /**
   * At the budget, with requests of other tenants waiting: the switch the session would get when `statement` (its
   * holder's last) is answered leaves now, in the same write (the caller corks the socket). The statement's answer and
   * the server's auth switch then come together, and the switch costs one round trip of its own instead of two.
   */
  function switchBehind(slot: Slot, statement: unknown): void {
    if (closed || slot.dead || slot.handoff || slots.size + opening < opts.max || health.isDown()) return;
    if (!canSwitchBehind(slot.conn, statement)) return;
    const w = nextToSwitch(slot);
    if (!w) return;
    const h = new Handoff(w);
    slot.handoff = h;
    w.serving = true;
    inc(w.login.key);
    counters.behind++;
    switchTo(slot, w, { h, statement });
  }

  /**
   * One connection died under a waiter's switch (ECONNRESET…): that connection is gone, not the server. The waiter is
   * served again (once, at the head of the queue) and the server is probed; only a failed probe makes it down.
   */
  function retryAfterLostConnection(w: Waiter, err: Error): boolean {
    if (!CONNECTION_LOST.has(String(codeOf(err)))) return false;
    health.suspect();
    if (w.retried || w.settled || closed || health.isDown()) return false;
    w.retried = true;
    w.serving = false;
    waiters.unshift(w);
    return true;
  }

  /**
   * COM_CHANGE_USER with the handshake's character set: mysql2 tracks `SET NAMES` into its config and would otherwise
   * hand the next tenant that charset. On failure MariaDB keeps the previous user's session: the caller destroys it.
   */
  const changeUser = (slot: Slot, login: TenantLogin, holder?: AnswerHolder, h?: Handoff, behind?: unknown) =>
    new Promise<void>((resolve, reject) => {
      (slot.conn.config as { charsetNumber: number }).charsetNumber = slot.charsetNumber;
      slot.textRuns.clear();
      const answered = (err: unknown) => (err ? reject(err instanceof Error ? err : new Error('COM_CHANGE_USER failed')) : resolve());
      if (h) {
        h.listen(answered);
        switchUser(slot.conn, login, slot.charsetNumber, h.finish, holder, behind);
        return;
      }
      const deadline = slot.switchDeadline;
      switchUser(slot.conn, login, slot.charsetNumber, deadline ? answerWithin(answered, slot.inFlight, deadline) : answered, holder);
    });

  /**
   * A switch whose session is lent as soon as MariaDB's auth switch is answered, before its OK: for a login whose
   * sessions need no init. The answer is held (Slot.held) so that it leaves in one write with the session's first
   * statement; whatever the holder sends queues behind the switch, and fails with it (switch-user.ts).
   */
  class EarlyLend implements AnswerHolder {
    lent = false;

    constructor(
      private readonly slot: Slot,
      private readonly w: Waiter,
      private readonly h?: Handoff,
    ) {}

    hold(answer: HeldAnswer): void {
      const { slot, w, h } = this;
      if (closed || w.settled || h?.state === 'cancelled') return answer.send(); // lent (or given back) at the OK, as without a holder
      this.lent = true;
      slot.held = answer;
      slot.identity = w.identity;
      slot.serverStatus = undefined;
      if (initSql) counters.initsSkipped++;
      if (h?.state === 'sent') {
        h.lendable = true; // lent, and the answer sent, when its holder gives it back
        return;
      }
      setImmediate(sendHeld, slot);
      w.resolve(slot.conn);
    }
  }

  /** Writes a held answer still waiting for the session's first statement. */
  function sendHeld(slot: Slot): void {
    const held = slot.held;
    if (held === undefined) return;
    slot.held = undefined;
    held.send();
  }

  /** The bound on each COM_CHANGE_USER of this connection (made once per connection, not per switch). */
  function switchDeadline(slot: Slot): AnswerDeadline | undefined {
    const ms = opts.answerTimeoutMs;
    if (ms === undefined) return undefined;
    return {
      ms,
      // A live server answers COM_CHANGE_USER at once: no answer means it is hung.
      expired() {
        const err = timedOut('COM_CHANGE_USER', ms);
        health.markDown(err);
        return err;
      },
      abandon: () => abandon(slot),
    };
  }

  /** COM_CHANGE_USER of `slot` for waiter `w`, lent as soon as it can be; `behind`: sent behind the holder's statement. */
  function switchTo(slot: Slot, w: Waiter, behind?: { h: Handoff; statement: unknown }): void {
    counters.switches++;
    const from = slot.identity;
    slot.identity = '';
    const h = behind?.h;
    const early = !initSql || sessionState.get(w.login) === 'set' ? new EarlyLend(slot, w, h) : undefined;
    ready(
      slot,
      w,
      changeUser(slot, w.login, early, h, behind?.statement).catch((err: Error & { code?: string }) => {
        counters.switchFailures++;
        opts.onEvent?.('switch-failed', { from: from.split('\u0000')[0], to: w.login.user, code: err.code });
        throw err;
      }),
      early,
      h,
    );
  }

  function open(w: Waiter): void {
    opening++;
    counters.opens++;
    inc(w.login.key); // counts towards the tenant's cap while it opens
    const connect = opts.connect ?? ((o: mysql.ConnectionOptions) => mysql.createConnection(o) as RawConnection);
    const conn = connect({ ...opts.connectionOptions, host: opts.host, port: opts.port, ...loginOptions(w.login) });
    const failed = (err: Error) => {
      opening--;
      dec(w.login.key);
      conn.destroy();
      if (!retryAfterLostConnection(w, err)) w.reject(failure(err));
      pump();
    };
    conn.once('error', failed);
    conn.once('connect', (handshake: { serverVersion?: string }) => {
      conn.removeListener('error', failed);
      opening--;
      if (initSql === undefined) {
        const version = String(handshake?.serverVersion ?? '');
        initSql = opts.sessionInit(version);
        check = opts.sessionCheck?.(version);
      }
      const slot: Slot = {
        conn,
        identity: '',
        login: w.login,
        leased: true,
        dead: false,
        retire: false,
        lastUsed: Date.now(),
        charsetNumber: (conn.config as { charsetNumber: number }).charsetNumber,
        inFlight: new Set(),
        textRuns: new Set(),
        held: undefined,
      };
      slot.statementDeadline = statementDeadline(slot);
      slot.switchDeadline = switchDeadline(slot);
      slots.set(conn, slot);
      watch(slot);
      ready(slot, w, Promise.resolve());
    });
  }

  /** Errors and ends mark a connection dead; every OK packet's serverStatus tells whether a transaction is open. */
  function watch(slot: Slot): void {
    const { conn } = slot;
    const dead = () => markDead(slot);
    conn.on('error', dead); // also keeps an unhandled 'error' event from crashing the process
    conn.on('end', dead);
    type Callback = (err: unknown, result: unknown, ...rest: unknown[]) => unknown;
    const track =
      (cb: unknown) =>
      (err: unknown, result: unknown, ...rest: unknown[]) => {
        const status = (result as { serverStatus?: unknown } | null)?.serverStatus;
        if (!err && typeof status === 'number') slot.serverStatus = status;
        return (cb as Callback)(err, result, ...rest);
      };
    const wrap = (method: 'query' | 'execute') => {
      const original = (conn[method] as (...a: unknown[]) => unknown).bind(conn);
      return (...args: unknown[]) => {
        const last = args.length - 1;
        if (typeof args[last] === 'function') {
          // Given up (its server went down, a deadline passed) while lent: a later statement (a transaction's next one)
          // fails at once instead of waiting for an answer that cannot come.
          if (slot.dead && slot.conn.stream.destroyed) return refuse(args[last] as (err: Error) => void);
          args[last] = bounded(slot, track(args[last]));
        }
        return original(...args);
      };
    };
    const query = wrap('query');
    const wrappedExecute = wrap('execute');
    const execute = (...args: unknown[]) => {
      sendHeld(slot);
      return wrappedExecute(...args);
    };
    /** Sends a statement, with a switch behind it when it is its lease's last and another tenant waits. */
    const send = (...args: unknown[]) => {
      const options = args[0] as PreparedWhenRepeated | string;
      if (typeof options !== 'object' || options.lastOnLease !== true || waiters.length === 0 || slot.handoff) return sendOne(...args);
      const stream = conn.stream as unknown as { cork(): void; uncork(): void };
      stream.cork();
      try {
        const command = sendOne(...args);
        switchBehind(slot, command);
        return command;
      } finally {
        stream.uncork();
      }
    };
    const sendOne = (...args: unknown[]) => {
      const options = args[0] as PreparedWhenRepeated | string;
      const held = slot.held;
      if (held !== undefined) {
        // The session's first statement since its switch: one that writes nothing leaves with the switch's answer.
        slot.held = undefined;
        if (typeof options === 'object' && options.readOnly === true) {
          const command = query(...args);
          if (held.sendWith(command)) counters.pipelined++;
          return command;
        }
        held.send();
      }
      if (typeof options === 'object' && options.preparedWhenRepeated === true) {
        if (slot.textRuns.has(options.sql)) return execute(...args);
        if (slot.textRuns.size >= TEXT_RUNS_MAX) slot.textRuns.clear();
        slot.textRuns.add(options.sql);
      }
      return query(...args);
    };
    Object.assign(conn, { execute, query: send });
  }

  function refuse(cb: (err: Error) => void): EventEmitter {
    const err = health.isDown()
      ? downError()
      : Object.assign(new Error('the connection was given up'), { code: MYSQL2_CONNECTION_LOST, fatal: true });
    process.nextTick(cb, err);
    return new EventEmitter(); // Sequelize calls setMaxListeners() on what query() returns
  }

  /** A statement's answer, awaited at most statementDeadlineMs; unanswered for probeAfterMs, the server is probed. */
  function bounded(slot: Slot, cb: (err: unknown, ...rest: unknown[]) => unknown) {
    return slot.statementDeadline ? answerWithin(cb, slot.inFlight, slot.statementDeadline) : cb;
  }

  /** The bound on each statement of this connection (made once per connection, not per statement). */
  function statementDeadline(slot: Slot): AnswerDeadline | undefined {
    const ms = opts.statementDeadlineMs;
    if (ms === undefined) return undefined;
    return {
      ms,
      stallMs: opts.probeAfterMs,
      onStall: () => health.suspect(),
      // Past the server's own statement timeout: this connection is given up; the server is probed (it may be alive).
      expired() {
        health.suspect();
        return Object.assign(
          unavailable(
            'TENANT_DB_UNAVAILABLE',
            'the organisation database did not answer',
            health.retryAfterMs(),
            timedOut('a statement', ms),
          ),
          { fatal: true },
        );
      },
      abandon: () => abandon(slot),
    };
  }

  /**
   * An acquire waiting in the queue. Its deadline covers the queue AND the switch or open serving it: a session ready
   * after its caller gave up is given back, not lost. (A class: made on every acquire that switches or waits, and
   * methods cost nothing per instance.)
   */
  class QueuedAcquire implements Waiter {
    settled = false;
    serving = false;
    retried?: boolean;
    readonly timer: NodeJS.Timeout;
    readonly since = performance.now();

    constructor(
      readonly login: TenantLogin,
      readonly identity: string,
      private readonly answer: (conn: RawConnection) => void,
      private readonly fail: (err: Error) => void,
    ) {
      this.timer = setTimeout(acquireTimedOut, opts.acquireTimeoutMs, this);
    }

    resolve(conn: RawConnection): void {
      clearTimeout(this.timer);
      if (this.settled) return api.release(conn);
      this.settled = true;
      this.answer(conn);
    }

    reject(err: Error): void {
      clearTimeout(this.timer);
      if (this.settled) return;
      this.settled = true;
      this.fail(err);
    }

    timedOut(): void {
      if (this.settled) return;
      this.settled = true;
      if (!this.serving) waiters.splice(waiters.indexOf(this), 1);
      counters.timeouts++;
      this.fail(
        new ConnectionBudgetTimeoutError(
          `no connection to ${opts.host}:${opts.port} within ${opts.acquireTimeoutMs} ms (tenant ${this.login.key})`,
        ),
      );
    }
  }
  const acquireTimedOut = (w: QueuedAcquire) => w.timedOut();

  /** Nobody queued and an idle session of exactly this tenant: lent at once, no I/O at all. */
  function lendIdle(login: TenantLogin, identity: string): RawConnection | undefined {
    if (waiters.length > 0 || !underCap(login.key)) return undefined;
    const slot = takeIdle(identity);
    if (!slot) return undefined;
    counters.sameTenantHits++;
    lend(slot, login);
    return slot.conn;
  }

  const api: ServerConnections = {
    tryAcquire(login) {
      if (closed || health.isDown()) return undefined;
      const conn = lendIdle(login, identityOf(login));
      if (!conn) return undefined;
      counters.acquires++;
      lastLogin = login;
      warm(login.key);
      return conn;
    },

    acquire(login) {
      if (closed) return Promise.reject(shuttingDown('tenant connections are closing'));
      counters.acquires++;
      lastLogin = login;
      if (health.isDown()) return Promise.reject(downError());
      warm(login.key);
      const identity = identityOf(login);
      const idle = lendIdle(login, identity);
      if (idle) return Promise.resolve(idle);
      return new Promise<RawConnection>((resolve, reject) => {
        waiters.push(new QueuedAcquire(login, identity, resolve, reject));
        pump();
      });
    },

    release(conn) {
      const slot = slots.get(conn);
      if (!slot?.leased) return; // unknown or given back twice: ignore
      if (slot.handoff) return handOver(slot, slot.handoff);
      sendHeld(slot); // given back before any statement: the switch completes
      unlend(slot, slot.login.key);
      slot.lastUsed = Date.now();
      if (slot.dead || slot.retire || closed || !isUsable(conn)) {
        kill(slot);
      } else if (isDirty(slot.serverStatus)) {
        // A transaction left open (a bug): reset the whole session before anyone, even this tenant, gets it back.
        counters.resets++;
        opts.onEvent?.('dirty-release', { tenant: slot.login.key, serverStatus: slot.serverStatus });
        const identity = slot.identity;
        slot.identity = '';
        slot.leased = true; // not lendable while it resets
        changeUser(slot, slot.login)
          .then(() => initialise(conn, slot.login))
          .then(
            () => {
              slot.leased = false;
              slot.identity = identity;
              slot.serverStatus = undefined;
              if (closed || slot.retire) kill(slot);
              else park(slot);
            },
            () => kill(slot),
          )
          .finally(pump);
        return;
      } else {
        park(slot);
      }
      pump();
    },

    destroy(conn) {
      const slot = slots.get(conn);
      if (!slot) return;
      if (slot.handoff) cancelHandoff(slot, slot.handoff);
      if (slot.leased) unlend(slot, slot.login.key);
      kill(slot);
      pump();
    },

    evictTenant(key) {
      for (const slot of [...slots.values()]) {
        if (slot.handoff?.w.login.key === key) slot.handoff.retire = true;
        if (slot.login.key !== key) continue;
        if (slot.leased) slot.retire = true;
        else kill(slot);
      }
      pump();
    },

    stats() {
      let leased = 0;
      for (const s of slots.values()) if (s.leased) leased++;
      return {
        open: slots.size,
        opening,
        idle: idleLru.size,
        leased,
        waiting: waiters.length,
        ...counters,
        down: health.isDown(),
        ...health.stats(),
      };
    },

    async close(graceMs = 5000) {
      closed = true;
      clearInterval(reaper);
      clearTimeout(repump);
      health.close();
      for (const w of waiters.splice(0)) w.reject(shuttingDown('tenant connections are closing'));
      for (const slot of [...slots.values()]) if (slot.handoff) cancelHandoff(slot, slot.handoff);
      for (const slot of [...idleLru]) kill(slot);
      const deadline = Date.now() + graceMs;
      while ((slots.size > 0 || opening > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const slot of [...slots.values()]) kill(slot);
    },
  };
  return api;
}
