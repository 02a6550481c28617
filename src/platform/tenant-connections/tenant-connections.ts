/**
 * The tenant connections of a process. Tenants and connections are separate budgets: each tenant DB has its own
 * instance (a TenantDb: a small, long-lived cache entry, TENANT_CACHE_MAX of them, whose Sequelize instance is built
 * only if something asks for it), and every instance of one MySQL
 * server leases its sessions from that server's shared connections (TENANT_CONNECTIONS_MAX per process), switched to
 * the tenant's own MySQL user with COM_CHANGE_USER. A tenant never holds more than TENANT_POOL_MAX of them at once.
 */
import type { Config } from '../../../config/config.js';
import { createSequelize } from '../db/sequelize.js';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { SecretBox } from '../lib/secrets.js';
import { createInstanceCache, type InstanceCacheStats, type TenantInstanceCache } from './instance-cache.js';
import { TenantDb } from './sequelize-lease.js';
import {
  createServerConnections,
  type ServerConnections,
  type ServerConnectionsStats,
  type SessionCheck,
  type TenantLogin,
} from './server-connections.js';
import type { ServerEndpoint } from './tenant-db-ref.js';

/** What the pools report: the instance cache, and the physical connections of every server summed up. */
export interface TenantConnectionsStats extends InstanceCacheStats {
  /** Physical connections open (or opening) to every server, and those lent to a tenant. */
  connections: number;
  connectionsInUse: number;
  switches: number;
  connectionWaits: number;
  connectionTimeouts: number;
  /** Session inits run, and sessions opened or switched that needed none. */
  sessionInits: number;
  sessionInitsSkipped: number;
  /** Switches whose session's first statement (a read) left in one write with the switch's last packet. */
  switchesPipelined: number;
  /** Switches that left in one write with the previous tenant's last statement on the session (another tenant waited). */
  switchesBehind: number;
}

export interface TenantConnections extends TenantInstanceCache<TenantDb> {
  stats(): TenantConnectionsStats;
  /** The connection budget of each server this process has reached, by server id. */
  serverStats(): Map<number, ServerConnectionsStats>;
}

/** A statement timeout as the server takes it: whole milliseconds, at least 1 (init, account and check agree). */
const wholeMs = (ms: number) => Math.max(1, Math.round(ms));

/**
 * The session every tenant connection starts with, new or switched: UTC (Sequelize writes dates in UTC, and the
 * tables' CURRENT_TIMESTAMP defaults must agree), and the statement timeout: MariaDB's max_statement_time (seconds,
 * every statement) or MySQL's max_execution_time (milliseconds, SELECTs; writes are bounded by innodb_lock_wait_timeout).
 */
export function tenantSessionInit(serverVersion: string, statementTimeoutMs: number): string {
  const ms = wholeMs(statementTimeoutMs);
  const limit = /mariadb/i.test(serverVersion) ? `max_statement_time = ${ms / 1000}` : `max_execution_time = ${ms}`;
  return `SET time_zone = '+00:00', ${limit}`;
}

/**
 * The limits a tenant's MySQL account carries itself (`CREATE/ALTER USER … <this>`), so that its sessions need no init
 * (tenantSessionCheck): MariaDB's per-account MAX_STATEMENT_TIME; nothing on MySQL, which has none.
 */
export function tenantAccountLimits(serverVersion: string, statementTimeoutMs: number): string {
  if (!/mariadb/i.test(serverVersion)) return '';
  return ` WITH MAX_STATEMENT_TIME ${wholeMs(statementTimeoutMs) / 1000}`;
}

/** Session time zones that are UTC for good: `SYSTEM` only where the server's system zone is UTC (not 'GMT': London's winter name). */
const isUtc = (zone: unknown, systemZone: unknown) => zone === '+00:00' || zone === 'UTC' || (zone === 'SYSTEM' && systemZone === 'UTC');

/**
 * When a tenant session needs no init: on MariaDB, a session of an account created `WITH MAX_STATEMENT_TIME` (the
 * provisioner does, `bin/tenant accounts sync` for older ones) has the limit from its login and from every
 * COM_CHANGE_USER, and a server running in UTC gives it the time zone. MySQL has no per-account statement limit.
 */
export function tenantSessionCheck(serverVersion: string, statementTimeoutMs: number): SessionCheck | undefined {
  if (!/mariadb/i.test(serverVersion)) return undefined;
  const seconds = wholeMs(statementTimeoutMs) / 1000;
  return {
    sql: 'SELECT @@max_statement_time AS seconds, @@time_zone AS zone, @@system_time_zone AS systemZone',
    holds: (row) => Math.abs(Number(row.seconds) - seconds) < 0.0005 && isUtc(row.zone, row.systemZone),
  };
}

/**
 * A statement failed because its server went down (or stopped answering) while it ran: whatever wrapped the error on
 * its way (Sequelize's DatabaseError, lean-query's ConnectionError), the caller gets the server's own 503
 * TENANT_DB_UNAVAILABLE with its Retry-After.
 */
function surfaceServerDown(err: unknown): never {
  type Wrapped = { original?: unknown; parent?: unknown; cause?: unknown };
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    if (e instanceof AppError && e.code === 'TENANT_DB_UNAVAILABLE') throw e;
    const w = e as Wrapped;
    e = w.original ?? w.parent ?? w.cause;
  }
  throw err;
}

/** The tenant connections of this process: an instance cache over a connection budget per server. */
export function createTenantConnections(deps: {
  config: Config;
  endpoint: ServerEndpoint;
  secrets: SecretBox;
  logger: Logger;
}): TenantConnections {
  const { endpoint, secrets, logger } = deps;
  const t = deps.config.tenant;
  const byServer = new Map<number, Promise<ServerConnections>>();
  const ready = new Map<number, ServerConnections>();

  function connectionsOf(serverId: number): Promise<ServerConnections> {
    let p = byServer.get(serverId);
    if (!p) {
      p = endpoint(serverId).then(({ host, port }) =>
        createServerConnections({
          host,
          port,
          max: t.connectionsMax,
          perTenantMax: t.poolMax,
          acquireTimeoutMs: t.acquireTimeoutMs,
          switchWaitMs: t.switchWaitMs,
          idleMs: t.idleMs,
          // What Sequelize's mysql dialect would use, plus -IGNORE_SPACE: MariaDB applies that handshake flag to a new
          // session's sql_mode but not after COM_CHANGE_USER, so sessions would differ by how they were made.
          connectionOptions: {
            flags: ['-FOUND_ROWS', '-IGNORE_SPACE'],
            timezone: '+00:00',
            supportBigNumbers: true,
            bigNumberStrings: false,
            dateStrings: false,
            connectTimeout: t.connectTimeoutMs,
            // mysql2 empties its prepared-statement cache on every COM_CHANGE_USER by filling arrays of this size
            // (16,000 by default: 2 % of the API's CPU at 10,000 tenants); tenant statements are not prepared.
            maxPreparedStatements: 16,
          },
          retryAfterMs: t.retryAfterMs,
          // Every wait on the server is bounded (a hung server must not hang its tenants; docs/operations.md).
          answerTimeoutMs: t.connectTimeoutMs,
          statementDeadlineMs: deps.config.tenantStatementTimeoutMs + t.connectTimeoutMs,
          probeAfterMs: t.probeAfterMs,
          sessionInit: (version) => tenantSessionInit(version, deps.config.tenantStatementTimeoutMs),
          sessionCheck: (version) => tenantSessionCheck(version, deps.config.tenantStatementTimeoutMs),
          onEvent: (event, detail) => logger.warn(`tenant connection ${event}`, { serverId, ...detail }),
        }),
      );
      p.then(
        (c) => ready.set(serverId, c),
        () => byServer.delete(serverId),
      );
      byServer.set(serverId, p);
    }
    return p;
  }

  /** A tenant's Sequelize instance, for the few callers that ask for one (its password is the lease's, not its own). */
  const sequelizeFor = (login: TenantLogin) =>
    createSequelize({ host: '', port: 0, user: login.user, password: '', database: login.database, poolMax: t.poolMax });

  const cache = createInstanceCache({
    maxOpen: t.cacheMax,
    // No idle expiry: an instance holds no connection (its sessions idle out in the server's connections, TENANT_IDLE_MS),
    // and under a long-tailed fleet expiring it would make a rare tenant's every request a miss.
    acquireTimeoutMs: t.acquireTimeoutMs,
    retryAfterMs: t.retryAfterMs,
    logger,
    async open(org) {
      const connections = await connectionsOf(org.dbServerId);
      const login = { key: String(org.id), user: org.dbUser, password: secrets.decrypt(org.dbPasswordEnc), database: org.dbName };
      const db = new TenantDb(connections, login, sequelizeFor);
      // A wrong password or a server down shows here, once, not on every request: a session as the tenant is had
      // (switched or opened) and given back idle, so the request that follows takes it without a switch. No statement
      // is sent (a SELECT cost, on a busy budget, a second switch per miss).
      const { pool } = db.connectionManager;
      pool.release(await pool.acquire());
      return db;
    },
  });

  return {
    withTenant: (org, fn) => cache.withTenant(org, fn).catch(surfaceServerDown),
    evict(orgId) {
      cache.evict(orgId);
      // Dropped or re-credentialed: its parked sessions must not be reused under the old login.
      for (const c of ready.values()) c.evictTenant(String(orgId));
    },
    serverStats() {
      return new Map([...ready].map(([id, c]) => [id, c.stats()]));
    },
    stats() {
      const s = {
        ...cache.stats(),
        connections: 0,
        connectionsInUse: 0,
        switches: 0,
        connectionWaits: 0,
        connectionTimeouts: 0,
        sessionInits: 0,
        sessionInitsSkipped: 0,
        switchesPipelined: 0,
        switchesBehind: 0,
      };
      for (const c of ready.values()) {
        const cs = c.stats();
        s.connections += cs.open + cs.opening;
        s.connectionsInUse += cs.leased;
        s.switches += cs.switches;
        s.connectionWaits += cs.waiting;
        s.connectionTimeouts += cs.timeouts;
        s.sessionInits += cs.inits;
        s.sessionInitsSkipped += cs.initsSkipped;
        s.switchesPipelined += cs.pipelined;
        s.switchesBehind += cs.behind;
      }
      return s;
    },
    async close(deadlineMs) {
      await cache.close(deadlineMs);
      await Promise.allSettled([...byServer.values()].map(async (p) => (await p).close(deadlineMs ?? 5000)));
    },
  };
}
