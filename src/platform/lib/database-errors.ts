/**
 * MySQL and MariaDB server errors classified by their number (errno), the one thing both servers and every client
 * agree on: mysql2 names only MySQL's numbers, so MariaDB's own — 1969 (max_statement_time exceeded), 1927 (connection
 * killed) — arrive with `code` undefined, and a rule written on `code` never sees them.
 *
 * - `busy`: the statement did not get its turn (statement timeout, lock wait, deadlock, a KILL QUERY). The database is
 *   there; the same statement a moment later is expected to pass. Nothing about the work itself is wrong.
 * - `unavailable`: the server cannot take work now (shutting down, out of connections or memory, read-only during a
 *   failover, disk full), or the tenant's user is missing a grant it should have.
 * Anything else (a duplicate key, an unknown column, bad data) is the work's own error and not classified here.
 */
export type DatabaseErrorKind = 'busy' | 'unavailable';

const KINDS = new Map<number, DatabaseErrorKind>([
  [1205, 'busy'], // ER_LOCK_WAIT_TIMEOUT (innodb_lock_wait_timeout)
  [1213, 'busy'], // ER_LOCK_DEADLOCK: the transaction was rolled back; running it again is the documented remedy
  [1317, 'busy'], // ER_QUERY_INTERRUPTED: KILL QUERY (an operator, a move's fence)
  [1969, 'busy'], // MariaDB ER_STATEMENT_TIMEOUT: max_statement_time exceeded (lock waits included)
  [3024, 'busy'], // MySQL ER_QUERY_TIMEOUT: max_execution_time exceeded
  [3572, 'busy'], // ER_LOCK_NOWAIT: NOWAIT could not get its lock
  [1637, 'busy'], // ER_TOO_MANY_CONCURRENT_TRXS
  [1615, 'busy'], // ER_NEED_REPREPARE: a table changed under a prepared statement
  [1040, 'unavailable'], // ER_CON_COUNT_ERROR: max_connections
  [1053, 'unavailable'], // ER_SERVER_SHUTDOWN
  [1203, 'unavailable'], // ER_TOO_MANY_USER_CONNECTIONS
  [1226, 'unavailable'], // ER_USER_LIMIT_REACHED: a per-user resource limit
  [1927, 'unavailable'], // MariaDB ER_CONNECTION_KILLED
  [4031, 'unavailable'], // MySQL ER_CLIENT_INTERACTION_TIMEOUT: disconnected for inactivity
  [1152, 'unavailable'], // ER_ABORTING_CONNECTION
  [1158, 'unavailable'], // ER_NET_READ_ERROR
  [1159, 'unavailable'], // ER_NET_READ_INTERRUPTED
  [1160, 'unavailable'], // ER_NET_ERROR_ON_WRITE
  [1161, 'unavailable'], // ER_NET_WRITE_INTERRUPTED
  [1290, 'unavailable'], // ER_OPTION_PREVENTS_STATEMENT: --read-only (an old primary during a failover)
  [1836, 'unavailable'], // ER_READ_ONLY_MODE
  [1037, 'unavailable'], // ER_OUTOFMEMORY
  [1041, 'unavailable'], // ER_OUT_OF_RESOURCES
  [1135, 'unavailable'], // ER_CANT_CREATE_THREAD
  [1021, 'unavailable'], // ER_DISK_FULL
  [1114, 'unavailable'], // ER_RECORD_FILE_FULL: the table (tablespace) is full
  // The tenant's user lacks a privilege it is granted by design: a grant missing (a move or a restore part-way, an
  // operator's REVOKE). The database's configuration, not the work: retried once it is put right.
  [1044, 'unavailable'], // ER_DBACCESS_DENIED_ERROR
  [1142, 'unavailable'], // ER_TABLEACCESS_DENIED_ERROR
  [1143, 'unavailable'], // ER_COLUMNACCESS_DENIED_ERROR
]);

interface ErrorLike {
  errno?: unknown;
  cause?: ErrorLike;
  original?: ErrorLike;
  parent?: ErrorLike;
}

/** The kind of server error `err` (or its cause chain: `cause`, Sequelize's `original`/`parent`) carries, if any. */
export function databaseErrorKind(err: unknown): DatabaseErrorKind | undefined {
  for (let e = err as ErrorLike | undefined, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    if (typeof e.errno === 'number') {
      const kind = KINDS.get(e.errno);
      if (kind) return kind;
    }
    e = e.cause ?? e.original ?? e.parent;
  }
  return undefined;
}
