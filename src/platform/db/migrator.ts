/** One Umzug factory for the shared DB and every tenant DB, plus a cross-process lock (MySQL GET_LOCK). */
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import { QueryTypes, type QueryInterface, type Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';

/** Folders of the migrations, valid from `src/` (tsx) and from `dist/src/` (compiled). */
export const SHARED_MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/', import.meta.url));
export const TENANT_MIGRATIONS_DIR = fileURLToPath(new URL('../../../tenant-migrations/', import.meta.url));

/** The table, in the migrated database itself, that records applied migrations. */
export const MIGRATIONS_TABLE = 'schema_migrations';

export type Migrator = Umzug<QueryInterface>;

interface MigrationModule {
  up(qi: QueryInterface): Promise<void>;
  down(qi: QueryInterface): Promise<void>;
}

/** Creates an Umzug migrator over `dir` for the database the given Sequelize is connected to. */
export function createMigrator(opts: { sequelize: Sequelize; dir: string }): Migrator {
  return new Umzug<QueryInterface>({
    migrations: {
      glob: ['*.{ts,js}', { cwd: opts.dir, ignore: ['*.d.ts'] }],
      // Names drop the extension so a DB migrated from `.ts` sources matches the compiled `.js` ones.
      resolve: ({ name, path: file, context }) => {
        const load = async () => (await import(pathToFileURL(file!).href)) as MigrationModule;
        return {
          name: path.basename(name, path.extname(name)),
          up: async () => (await load()).up(context),
          down: async () => (await load()).down(context),
        };
      },
    },
    context: opts.sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize: opts.sequelize, tableName: MIGRATIONS_TABLE }),
    logger: undefined,
  });
}

/** Raised when another runner holds a database's migration lock for longer than we wait. */
export class MigrationLockedError extends Error {
  constructor(
    readonly database: string,
    waitedSec: number,
  ) {
    super(`another runner is migrating ${database} (waited ${waitedSec}s)`);
    this.name = 'MigrationLockedError';
  }
}

/** Raised by withLock when the named lock stays held by another session for longer than we wait. */
export class LockTimeoutError extends Error {
  constructor(readonly lockName: string) {
    super(`lock ${lockName} is held by another session`);
    this.name = 'LockTimeoutError';
  }
}

/**
 * Runs fn while holding the server-wide MySQL lock `name` (GET_LOCK). The lock lives on one pinned connection of
 * `sequelize` (an empty transaction): fn must use other connections. Names over 64 characters are hashed.
 */
export async function withLock<T>(sequelize: Sequelize, name: string, waitSec: number, fn: () => Promise<T>): Promise<T> {
  const lockName = lockNameOf(name);
  return sequelize.transaction(async (transaction) => {
    const [row] = await sequelize.query<{ got: number | null }>('SELECT GET_LOCK(:lockName, :waitSec) AS got', {
      replacements: { lockName, waitSec },
      type: QueryTypes.SELECT,
      transaction,
    });
    if (row?.got !== 1) throw new LockTimeoutError(lockName);
    try {
      return await fn();
    } finally {
      await sequelize.query('SELECT RELEASE_LOCK(:lockName)', { replacements: { lockName }, transaction });
    }
  });
}

/** The GET_LOCK name for `name`: as is up to 64 characters (MySQL's limit), hashed beyond. */
export function lockNameOf(name: string): string {
  return name.length <= 64 ? name : `${name.slice(0, 23)}:${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

/** The name of a database's migration lock, as withMigrationLock takes it (for runners that lock a session themselves). */
export const migrationLockName = (database: string) => lockNameOf(`tenancy:migrate:${database}`);

/** Runs fn holding `tenancy:migrate:<database>`: two runners never migrate one database at once. */
export async function withMigrationLock<T>(sequelize: Sequelize, database: string, waitSec: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await withLock(sequelize, `tenancy:migrate:${database}`, waitSec, fn);
  } catch (err) {
    if (err instanceof LockTimeoutError) throw new MigrationLockedError(database, waitSec);
    throw err;
  }
}
