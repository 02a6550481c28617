/** One factory for every MySQL connection pool: the shared DB, each tenant DB, each server's admin link. */
import { Sequelize } from 'sequelize';

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
  });
}
