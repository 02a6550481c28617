import { databaseErrorKind } from './database-errors.js';

/**
 * Which errors are the infrastructure's (a database, the pool, Redis, a lock or a timeout), as opposed to the work's
 * own. Only these postpone a delivery; anything else is a bug or bad data that retrying cannot fix.
 */
const SEQUELIZE_CONNECTION =
  /^Sequelize(Connection|ConnectionRefused|ConnectionTimedOut|HostNotReachable|HostNotFound|AccessDenied|InvalidConnection)?Error$|^Connection(Acquire|Budget)TimeoutError$/;

/** True when `err` itself is a database connection failure (Sequelize's connection errors, a connection wait timed out). */
export function isDatabaseUnavailable(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return typeof name === 'string' && SEQUELIZE_CONNECTION.test(name);
}
/**
 * mysql2 / Node codes of a lost or refused connection (client-side: no server error number). Server errors (timeouts,
 * lock waits, deadlocks, shutdown…) are classified by number in database-errors.ts, for MariaDB and MySQL alike.
 */
const CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
]);
/** Our own 503s: a tenant DB unreachable, no slot free, shutting down, a queue down. */
const OWN_UNAVAILABLE = new Set([
  'TENANT_DB_UNAVAILABLE',
  'TENANT_MOVING',
  'TENANT_CAPACITY',
  'SHUTTING_DOWN',
  'DB_UNAVAILABLE',
  'QUEUE_UNAVAILABLE',
]);
/**
 * The text an online move's write fence answers a write with (SIGNAL in the tenant DB's triggers,
 * src/tenant-db/change-capture.ts): the tenant's database is being switched to another server; retry shortly.
 */
export const WRITES_PAUSED = 'TENANT_WRITES_PAUSED';

/** True when `err` (or its cause chain) is a write refused by a moving tenant's write fence. */
export function isWritesPaused(err: unknown): boolean {
  for (
    let e = err as ErrorLike | undefined, depth = 0;
    e && typeof e === 'object' && depth < 5;
    e = e.cause ?? e.original ?? e.parent, depth++
  )
    if (e.message?.startsWith(WRITES_PAUSED)) return true;
  return false;
}

/** ioredis: out of retries, a reply error (OOM, LOADING, CLUSTERDOWN…), a closed connection, no offline queue. */
const REDIS_NAMES = /^(MaxRetriesPerRequestError|ReplyError|AbortError|ClusterAllFailedError)$/;
const REDIS_MESSAGES = /Connection is closed|Stream isn't writeable|enableOfflineQueue/;

/** True when `err` (or its cause chain) says a dependency was unavailable or too slow, not that the work was wrong. */
export function isInfrastructureError(err: unknown): boolean {
  if (databaseErrorKind(err)) return true;
  for (let e = err as ErrorLike | undefined, depth = 0; e && depth < 5; e = e.cause ?? e.original ?? e.parent, depth++) {
    if (typeof e !== 'object') return false;
    if (e.name && SEQUELIZE_CONNECTION.test(e.name)) return true;
    if (e.name === 'TimeoutError') return true;
    if (e.code && (CODES.has(e.code) || OWN_UNAVAILABLE.has(e.code))) return true;
    if (e.message?.startsWith(WRITES_PAUSED)) return true;
    if ((e.name && REDIS_NAMES.test(e.name)) || (e.message && REDIS_MESSAGES.test(e.message))) return true;
  }
  return false;
}

interface ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  cause?: ErrorLike;
  original?: ErrorLike;
  parent?: ErrorLike;
}
