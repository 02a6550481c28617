/**
 * The hot path's statements: run on a session leased through the tenant's Sequelize instance (so the connection
 * budget, the lease rules and the tenant's own MySQL user all apply), without Sequelize's query layer (Query objects,
 * hooks, retries, model instances, result formatting), which cost more than the statement itself on a warm
 * connection (docs/benchmarks.md, tenant routing). Values are `?` placeholders escaped by mysql2, never interpolated.
 */
import type { Sequelize } from 'sequelize';

interface Lease {
  query(options: { sql: string; values: unknown[] }, cb: (err: Error | null, result?: unknown) => void): unknown;
}
interface ConnectionManager {
  getConnection(options: { type: string }): Promise<Lease>;
  releaseConnection(lease: Lease): void;
}

async function run(db: Sequelize, type: 'SELECT' | 'INSERT', sql: string, values: unknown[]): Promise<unknown> {
  const cm = db.connectionManager as unknown as ConnectionManager;
  const lease = await cm.getConnection({ type });
  try {
    return await new Promise((resolve, reject) => lease.query({ sql, values }, (err, result) => (err ? reject(err) : resolve(result))));
  } finally {
    cm.releaseConnection(lease);
  }
}

/** Runs a SELECT and answers its rows as plain objects. */
export function selectRows<T>(db: Sequelize, sql: string, values: unknown[]): Promise<T[]> {
  return run(db, 'SELECT', sql, values) as Promise<T[]>;
}

/** Runs an INSERT and answers the id it generated. */
export async function insertRow(db: Sequelize, sql: string, values: unknown[]): Promise<number> {
  const result = (await run(db, 'INSERT', sql, values)) as { insertId: number };
  return Number(result.insertId);
}
