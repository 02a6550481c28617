/**
 * Migrates one tenant database through a reused admin session: `USE` it, take its migration lock (the same
 * `tenancy:migrate:<db>` GET_LOCK as every other runner, held by this session), apply what is pending, read the version.
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import { MigrationLockedError, migrationLockName } from '../../platform/db/migrator.js';
import { sessionMigrator, type MigrationSet } from '../../platform/db/migration-set.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';
import { diffShapes, readShape } from './schema-shapes.js';
import type { SchemaReferences } from './schema-doctor.js';

export interface SessionMigrationResult {
  applied: string[];
  /** The last migration applied now (the database's version). */
  version: string | null;
  /** Migrations whose DDL had already been applied by a run killed before recording them: recorded now. */
  adopted: string[];
}

/** True for errors that mean the server could not be reached (not the migration's fault). */
export function isConnectionError(err: unknown): boolean {
  const name = (err as { name?: string }).name ?? '';
  const code = (err as { parent?: { code?: string }; original?: { code?: string } }).parent?.code ?? '';
  return (
    /^Sequelize(Connection|HostNotFound|HostNotReachable|ConnectionRefused|ConnectionTimedOut|AccessDenied)/.test(name) ||
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|PROTOCOL_CONNECTION_LOST)$/.test(code)
  );
}

/** Migrates `dbName` up to the set's latest through `session` (a pool of one connection, so `USE` and the lock stick). */
export async function migrateThroughSession(opts: {
  session: Sequelize;
  serverId: number;
  dbName: string;
  set: MigrationSet;
  lockWaitSec: number;
  references: SchemaReferences;
}): Promise<SessionMigrationResult> {
  const { session, dbName } = opts;
  await session.query(`USE ${quoteIdentifier(dbName)}`);
  const lock = migrationLockName(dbName);
  const [got] = await session.query<{ got: number | null }>('SELECT GET_LOCK(?, ?) AS got', {
    replacements: [lock, opts.lockWaitSec],
    type: QueryTypes.SELECT,
  });
  if (got?.got !== 1) throw new MigrationLockedError(dbName, opts.lockWaitSec);
  try {
    const adopted: string[] = [];
    // A migration that fails is recorded instead when the database already has exactly the schema it makes.
    const alreadyApplied = async (name: string) => {
      const same = diffShapes(await readShape(session, dbName), await opts.references.shape(opts.serverId, name)).length === 0;
      if (same) adopted.push(name);
      return same;
    };
    const migrator = sessionMigrator(opts.set, session, alreadyApplied);
    const applied = (await migrator.up()).map((m) => m.name);
    const version = [...migrator.executedBefore, ...applied].sort().at(-1) ?? null;
    return { applied, version, adopted };
  } finally {
    await session.query('SELECT RELEASE_LOCK(?)', { replacements: [lock] }).catch(() => undefined); // a lost session released it
  }
}
