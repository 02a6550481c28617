/** The shared (control-plane) DB: create it if missing, then migrate it. */
import type { Config } from '../../../config/config.js';
import { quoteIdentifier } from './identifiers.js';
import { SHARED_MIGRATIONS_DIR, createMigrator, withMigrationLock } from './migrator.js';
import { createSequelize } from './sequelize.js';
import type { Sequelize } from 'sequelize';

/** Creates the shared database when it does not exist (as the configured admin user). */
export async function ensureSharedDatabase(config: Config): Promise<void> {
  const admin = createSequelize({ ...config.db, database: undefined, poolMax: 1, connectTimeoutMs: 5000 });
  try {
    await admin.query(`CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(config.db.name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  } finally {
    await admin.close();
  }
}

/** Ensures and migrates the shared DB; returns the migrations applied now. */
export async function prepareSharedDb(config: Config, sharedDb: Sequelize): Promise<string[]> {
  await ensureSharedDatabase(config);
  return migrateShared(sharedDb, config.db.name, config.migrationLockWaitSec);
}

/** Migrates the shared DB (under its lock); returns the names applied. */
export async function migrateShared(sharedDb: Sequelize, database: string, lockWaitSec: number): Promise<string[]> {
  const applied = await withMigrationLock(sharedDb, database, lockWaitSec, () =>
    createMigrator({ sequelize: sharedDb, dir: SHARED_MIGRATIONS_DIR }).up(),
  );
  return applied.map((m) => m.name);
}
