/**
 * The hot path's statements: run on a connection leased through a Sequelize instance's own connection manager (for a
 * tenant: so its connection budget, lease rules and own MySQL user all apply), without Sequelize's query layer (Query objects,
 * hooks, retries, model instances, result formatting), which cost more than the statement itself on a warm
 * connection (docs/benchmarks.md, tenant routing). Values are `?` placeholders escaped by mysql2, never interpolated.
 */
import { ConnectionAcquireTimeoutError, ConnectionError, type Transaction } from 'sequelize';

/** Per-statement mysql2 options (e.g. `dateStrings` to copy DATETIMEs exactly as stored). */
export interface StatementOptions {
  dateStrings?: boolean;
  /** Rows as `{ <table alias>: { column: value } }`: joined tables whose column names repeat. */
  nestTables?: boolean;
  typeCast?: (field: unknown, next: () => unknown) => unknown;
}

/** `?` placeholders with an array, or `:name` placeholders with an object (mysql2's namedPlaceholders). */
export type Values = unknown[] | Record<string, unknown>;

interface Lease {
  query(
    options: { sql: string; values: Values; namedPlaceholders?: boolean; lastOnLease?: boolean } & StatementOptions,
    cb: (err: Error | null, result?: unknown) => void,
  ): unknown;
}
/**
 * The instance's pool: sequelize-pool for the shared DB, the connection-budget lease for a tenant (sequelize-lease.ts).
 * Taken from directly: Sequelize's getConnection() adds only (unregistered) hooks around the same call.
 */
interface Pool {
  acquire(): Promise<Lease>;
  /** A tenant's lease when a session of its own is idle (sequelize-lease.ts), synchronously; undefined otherwise. */
  tryAcquire?(): Lease | undefined;
  release(lease: Lease): void;
  destroy(lease: Lease): unknown;
}

/** sequelize-pool's timeout as Sequelize's own getConnection() reports it. */
const acquireFailure = (err: unknown) => ((err as Error).name === 'TimeoutError' ? new ConnectionAcquireTimeoutError(err as Error) : err);

/**
 * What a statement tells the tenant connections (server-connections.ts): `preparedWhenRepeated`, prepared on a tenant
 * session that already ran it since its last switch; `readOnly`, it writes nothing, so it may leave with the last packet
 * of the session's switch.
 */
type RunOptions = StatementOptions & { preparedWhenRepeated?: boolean; readOnly?: boolean };

/**
 * One statement on a leased connection; a connection lost mid-statement is the database's outage (503 upstream).
 * `lastOnLease`: the lease ends with this statement's answer (a tenant's session may switch to another tenant behind it).
 */
function statement(lease: Lease, sql: string, values: Values, opts: RunOptions = {}, lastOnLease = false): Promise<unknown> {
  return new Promise((resolve, reject) =>
    lease.query({ ...opts, sql, values, namedPlaceholders: !Array.isArray(values), lastOnLease }, (err, result) => {
      if (!err) resolve(result);
      else reject((err as { fatal?: boolean }).fatal === true ? new ConnectionError(err) : err);
    }),
  );
}

/**
 * What statements run on: a Sequelize instance (the shared DB), or a tenant's database (`TenantDb`, which has no
 * Sequelize instance until something asks for one): both keep their pool at `connectionManager.pool`.
 */
export interface LeanDb {
  readonly connectionManager: object;
}

const poolOf = (db: LeanDb) => (db.connectionManager as { pool: Pool }).pool;

/**
 * Runs `fn` on one connection of the pool: released after, or destroyed if it was lost meanwhile. A tenant's idle
 * session is taken without waiting (no promise of the lease's own: the hot path's statement is the only one).
 */
function withLease<T>(db: LeanDb, fn: (lease: Lease) => Promise<T>): Promise<T> {
  const pool = poolOf(db);
  const lease = pool.tryAcquire?.();
  if (lease) return runOn(pool, lease, fn);
  return pool.acquire().then(
    (acquired) => runOn(pool, acquired, fn),
    (err: unknown) => {
      throw acquireFailure(err);
    },
  );
}

function runOn<T>(pool: Pool, lease: Lease, fn: (lease: Lease) => Promise<T>): Promise<T> {
  return fn(lease).then(
    (value) => {
      pool.release(lease);
      return value;
    },
    (err: unknown) => {
      if (err instanceof ConnectionError) void pool.destroy(lease);
      else pool.release(lease);
      throw err;
    },
  );
}

/** One statement on a lease of its own: the lease ends with its answer. */
const run = (db: LeanDb, sql: string, values: Values, opts: RunOptions = {}): Promise<unknown> =>
  withLease(db, (lease) => statement(lease, sql, values, opts, true));

const READ_ONLY = { readOnly: true } as const;

/** The statements of a transaction, on its one connection. */
export interface TransactionStatements {
  select<T>(sql: string, values: Values, opts?: StatementOptions): Promise<T[]>;
  write(sql: string, values: Values): Promise<WriteResult>;
}

const statementsOn = (lease: Lease): TransactionStatements => ({
  select: async <R>(sql: string, values: Values, opts?: StatementOptions) => (await statement(lease, sql, values, opts)) as R[],
  write: async (sql, values) => okPacket(await statement(lease, sql, values)),
});

/** The statements of a transaction that Sequelize opened (e.g. one spanning repository calls), on its connection. */
export function statementsOf(transaction: Transaction): TransactionStatements {
  return statementsOn((transaction as unknown as { connection: Lease }).connection);
}

const okPacket = (r: unknown): WriteResult => {
  const ok = r as WriteResult;
  return { affectedRows: Number(ok.affectedRows), insertId: Number(ok.insertId) };
};

/** Runs a SELECT and answers its rows as plain objects. */
export function selectRows<T>(db: LeanDb, sql: string, values: Values, opts?: StatementOptions): Promise<T[]> {
  return run(db, sql, values, opts ? { ...opts, readOnly: true } : READ_ONLY) as Promise<T[]>;
}

/** Runs a CALL and answers the rows of the procedure's first result set. */
export async function callRows<T>(db: LeanDb, sql: string, values: Values): Promise<T[]> {
  const [rows] = (await run(db, sql, values)) as [T[], unknown];
  return rows;
}

/** Values exactly as MySQL sends them where it matters for a copy: DATETIMEs as their strings (no time zone, all digits). */
export const AS_STORED: StatementOptions = { dateStrings: true, typeCast: (_field, next) => next() };

/**
 * A Date as the DATETIME literal mysql2 would write for it on a '+00:00' connection (`2026-01-02 03:04:05.678`), made
 * without its time zone arithmetic: a hot statement's two timestamps cost 2.4 µs less to format.
 */
export const utcDateTime = (d: Date): string => d.toISOString().slice(0, 23).replace('T', ' ');

const PREPARED_WHEN_REPEATED = { preparedWhenRepeated: true } as const;

/**
 * Runs an INSERT and answers the id it generated: prepared on a tenant session that ran it before since its last switch
 * (its server's parse and mysql2's escaping skipped), as text otherwise. An undefined value is NULL either way (mysql2's
 * execute() would refuse it).
 */
export async function insertRow(db: LeanDb, sql: string, values: unknown[]): Promise<number> {
  const bound = values.includes(undefined) ? values.map((v) => v ?? null) : values;
  const result = (await run(db, sql, bound, PREPARED_WHEN_REPEATED)) as { insertId: number };
  return Number(result.insertId);
}

/** What a write answers: rows it changed, and the id it generated (or the LAST_INSERT_ID(expr) it set). */
export interface WriteResult {
  affectedRows: number;
  insertId: number;
}

/** Runs an UPDATE, INSERT or DELETE and answers its OK packet. */
export async function write(db: LeanDb, sql: string, values: Values): Promise<WriteResult> {
  return okPacket(await run(db, sql, values));
}

/**
 * Runs an UPDATE that sets `LAST_INSERT_ID(expr)` and answers its OK packet with that value as `insertId`. The OK packet
 * carries it, except on MariaDB when the table has triggers (an online move's change capture, src/tenant-db/
 * change-capture.ts): there it says 0, and the value is read with `SELECT LAST_INSERT_ID()` on the same connection.
 */
export async function writeSettingLastInsertId(db: LeanDb, sql: string, values: Values): Promise<WriteResult> {
  return withLease(db, async (lease) => {
    const result = okPacket(await statement(lease, sql, values));
    if (result.affectedRows > 0 && result.insertId === 0) {
      const [row] = (await statement(lease, 'SELECT LAST_INSERT_ID() AS id', [])) as { id: number }[];
      result.insertId = Number(row?.id ?? 0);
    }
    return result;
  });
}
