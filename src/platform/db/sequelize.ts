/** One factory for every MySQL connection pool: the shared DB, each tenant DB, each server's admin link. */
import { QueryTypes, Sequelize } from 'sequelize';

export interface ConnectionOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database?: string;
  poolMax: number;
  idleMs?: number;
  acquireTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Server-side limit on each statement of this pool's sessions (MariaDB max_statement_time, MySQL max_execution_time). */
  statementTimeoutMs?: number;
}

interface RawConnection {
  query(sql: string, callback: (err: Error | null) => void): void;
}

const run = (c: RawConnection, sql: string) =>
  new Promise<void>((resolve, reject) => c.query(sql, (err) => (err ? reject(err) : resolve())));

/**
 * Sets the statement timeout on a new session: MariaDB's max_statement_time (seconds, every statement), or on MySQL,
 * which has no such variable, max_execution_time (milliseconds, SELECTs; writes are bounded by innodb_lock_wait_timeout).
 */
async function limitStatements(connection: RawConnection, ms: number): Promise<void> {
  const whole = Math.max(1, Math.round(ms));
  try {
    await run(connection, `SET SESSION max_statement_time = ${whole / 1000}`);
  } catch {
    await run(connection, `SET SESSION max_execution_time = ${whole}`);
  }
}

/** Creates a Sequelize instance (lazy: no connection is opened until the first query). */
export function createSequelize(o: ConnectionOptions): Sequelize {
  return new Sequelize(o.database ?? '', o.user, o.password, {
    dialect: 'mysql',
    host: o.host,
    port: o.port,
    logging: false,
    timezone: '+00:00',
    pool: { max: o.poolMax, min: 0, idle: o.idleMs ?? 10_000, acquire: o.acquireTimeoutMs ?? 10_000, evict: 1_000 },
    dialectOptions: { connectTimeout: o.connectTimeoutMs ?? 5_000, supportBigNumbers: true, bigNumberStrings: false, dateStrings: false },
    define: { timestamps: false },
    hooks:
      o.statementTimeoutMs === undefined
        ? {}
        : { afterConnect: (connection: unknown) => limitStatements(connection as RawConnection, o.statementTimeoutMs!) },
  });
}

/** The server's version string (MariaDB's says so). */
export async function serverVersion(db: Sequelize): Promise<string> {
  const [row] = await db.query<{ v: string }>('SELECT VERSION() AS v', { type: QueryTypes.SELECT });
  return String(row?.v ?? '');
}
