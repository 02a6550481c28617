/**
 * The hot path's statements: run on a connection leased through a Sequelize instance's own connection manager (for a
 * tenant: so its connection budget, lease rules and own MySQL user all apply), without Sequelize's query layer (Query objects,
 * hooks, retries, model instances, result formatting), which cost more than the statement itself on a warm
 * connection (docs/benchmarks.md, tenant routing). Values are `?` placeholders escaped by mysql2, never interpolated.
 */
import type { Sequelize } from 'sequelize';

/** Per-statement mysql2 options (e.g. `dateStrings` to copy DATETIMEs exactly as stored). */
export interface StatementOptions {
  dateStrings?: boolean;
  typeCast?: (field: unknown, next: () => unknown) => unknown;
}

interface Lease {
  query(options: { sql: string; values: unknown[] } & StatementOptions, cb: (err: Error | null, result?: unknown) => void): unknown;
}
interface ConnectionManager {
  getConnection(options: { type: string }): Promise<Lease>;
  releaseConnection(lease: Lease): void;
}

async function run(
  db: Sequelize,
  type: 'SELECT' | 'INSERT',
  sql: string,
  values: unknown[],
  opts: StatementOptions = {},
): Promise<unknown> {
  const cm = db.connectionManager as unknown as ConnectionManager;
  const lease = await cm.getConnection({ type });
  try {
    return await new Promise((resolve, reject) =>
      lease.query({ ...opts, sql, values }, (err, result) => (err ? reject(err) : resolve(result))),
    );
  } finally {
    cm.releaseConnection(lease);
  }
}

/** Runs a SELECT and answers its rows as plain objects. */
export function selectRows<T>(db: Sequelize, sql: string, values: unknown[], opts?: StatementOptions): Promise<T[]> {
  return run(db, 'SELECT', sql, values, opts) as Promise<T[]>;
}

/** Values exactly as MySQL sends them where it matters for a copy: DATETIMEs as their strings (no time zone, all digits). */
export const AS_STORED: StatementOptions = { dateStrings: true, typeCast: (_field, next) => next() };

/** Runs an INSERT and answers the id it generated. */
export async function insertRow(db: Sequelize, sql: string, values: unknown[]): Promise<number> {
  // (also serves multi-row INSERTs: `VALUES ?` with an array of row arrays)
  const result = (await run(db, 'INSERT', sql, values)) as { insertId: number };
  return Number(result.insertId);
}
