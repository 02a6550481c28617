/**
 * The tenant migrations of one folder, listed once per process, and an Umzug for one tenant database reached through
 * a reused admin session (after `USE`): no Sequelize instance, glob or model per tenant.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { QueryTypes, type QueryInterface, type Sequelize } from 'sequelize';
import { Umzug, type UmzugStorage } from 'umzug';
import { MIGRATIONS_TABLE } from './migrator.js';

interface MigrationModule {
  up(qi: QueryInterface): Promise<void>;
  down(qi: QueryInterface): Promise<void>;
}

/** The migrations of a folder, in the order they apply (by name: names start with their date). */
export interface MigrationSet {
  dir: string;
  names: readonly string[];
  /** The last migration's name: the version every tenant is brought to (null: the folder is empty). */
  latest: string | null;
  load(name: string): Promise<MigrationModule>;
}

/** Lists the migrations of `dir` (`*.ts`/`*.js`, not `.d.ts`; a name drops its extension, as in createMigrator). */
export async function loadMigrationSet(dir: string): Promise<MigrationSet> {
  const files = new Map<string, string>();
  for (const file of await readdir(dir)) {
    if (file.endsWith('.d.ts') || !/\.(ts|js)$/.test(file)) continue;
    files.set(path.basename(file, path.extname(file)), path.join(dir, file));
  }
  const names = [...files.keys()].sort();
  const modules = new Map<string, Promise<MigrationModule>>();
  return {
    dir,
    names,
    latest: names.at(-1) ?? null,
    load(name) {
      let m = modules.get(name);
      if (!m) {
        m = import(pathToFileURL(files.get(name)!).href) as Promise<MigrationModule>;
        modules.set(name, m);
      }
      return m;
    },
  };
}

/** The schema_migrations table through a session already switched to the tenant's database (`USE`). */
function tableStorage(session: Sequelize, seen: string[]): UmzugStorage {
  const table = MIGRATIONS_TABLE;
  return {
    async executed() {
      try {
        const names = (await session.query<{ name: string }>(`SELECT name FROM ${table}`, { type: QueryTypes.SELECT })).map((r) => r.name);
        seen.splice(0, seen.length, ...names);
        return names;
      } catch (err) {
        if ((err as { parent?: { errno?: number } }).parent?.errno !== 1146) throw err; // ER_NO_SUCH_TABLE: a bare database
        await session.query(`CREATE TABLE IF NOT EXISTS ${table} (name VARCHAR(255) NOT NULL PRIMARY KEY)`);
        return [];
      }
    },
    async logMigration({ name }) {
      await session.query(`INSERT INTO ${table} (name) VALUES (?)`, { replacements: [name] });
    },
    async unlogMigration({ name }) {
      await session.query(`DELETE FROM ${table} WHERE name = ?`, { replacements: [name] });
    },
  };
}

/**
 * An Umzug over the set for the database the session is using (`executedBefore`: the names its storage last read). `alreadyApplied(name)` is asked when a migration
 * throws: true means the schema already is what the migration makes (a run killed after the DDL, before it was
 * recorded), and the migration is recorded instead of failing.
 */
export function sessionMigrator(
  set: MigrationSet,
  session: Sequelize,
  alreadyApplied?: (name: string) => Promise<boolean>,
): Umzug<QueryInterface> & { executedBefore: string[] } {
  const qi = session.getQueryInterface();
  const executedBefore: string[] = [];
  const umzug = new Umzug<QueryInterface>({
    migrations: set.names.map((name) => ({
      name,
      up: async () => {
        try {
          await (await set.load(name)).up(qi);
        } catch (err) {
          if (!(await alreadyApplied?.(name).catch(() => false))) throw err;
        }
      },
      down: async () => (await set.load(name)).down(qi),
    })),
    context: qi,
    storage: tableStorage(session, executedBefore),
    logger: undefined,
  });
  // What the storage answered when last asked: with what up() applied, the database's version without another query.
  return Object.assign(umzug, { executedBefore });
}
