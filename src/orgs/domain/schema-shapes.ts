/**
 * What a database's schema is (tables, columns with type, nullability, default and collation, indexes), read from
 * information_schema for many databases of one server at once, and the differences between two of them as text.
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import { MIGRATIONS_TABLE } from '../../platform/db/migrator.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';
import { mapWithConcurrency } from '../../platform/lib/concurrency.js';
import { OWNER_TABLE } from './provisioner.js';

export interface TableShape {
  columns: Map<string, string>;
  indexes: Map<string, string>;
}
/** Table name → its shape. */
export type SchemaShape = Map<string, TableShape>;

/**
 * Bookkeeping tables that no migration makes and that are not compared: Umzug's own, and the control plane's, all named
 * `tenancy_…` (the owner marker, a move's copy marker, change log and write fence).
 */
const isIgnored = (table: string) => table === MIGRATIONS_TABLE || table === OWNER_TABLE || table.startsWith('tenancy_');

/** `LIKE` pattern of the databases whose names start with `prefix` (its `_` and `%` escaped). */
export const likePrefix = (prefix: string) => `${prefix.replace(/[\\_%]/g, (c) => `\\${c}`)}%`;

/** The longest common prefix of some names (to read only those databases from information_schema). */
export function commonPrefix(names: readonly string[]): string {
  if (!names.length) return '';
  let p = names[0]!;
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p;
}

const tableOf = (shapes: Map<string, SchemaShape>, db: string, table: string): TableShape => {
  let schema = shapes.get(db);
  if (!schema) shapes.set(db, (schema = new Map<string, TableShape>()));
  let t = schema.get(table);
  if (!t) schema.set(table, (t = { columns: new Map(), indexes: new Map() }));
  return t;
};

/** A base table of a database matching a LIKE pattern: its database (`s`) and name (`t`). */
export interface ListedTable {
  s: string;
  t: string;
}

/** Every base table of the databases matching `like`, from the data dictionary (no table is opened). */
export function listTables(admin: Sequelize, like: string): Promise<ListedTable[]> {
  return admin.query<ListedTable>(
    "SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE :like AND TABLE_TYPE = 'BASE TABLE'",
    { replacements: { like }, type: QueryTypes.SELECT },
  );
}

/**
 * Reads the schemas of every database matching `like` (a LIKE pattern) on the server, whatever their number: the
 * list of tables (information_schema.TABLES, read from the data dictionary without opening a table), then the columns
 * and indexes of the tables named in `tables` (one COLUMNS and one STATISTICS query per name: with the table name
 * given, MySQL opens only that table in each database), or of every table when `tables` is absent. A table outside
 * `tables` appears without columns or indexes (its presence is what matters). Databases with no table are absent.
 */
export async function readShapes(
  admin: Sequelize,
  like: string,
  tables?: readonly string[],
  listed?: readonly ListedTable[],
): Promise<Map<string, SchemaShape>> {
  const shapes = new Map<string, SchemaShape>();
  listed ??= await listTables(admin, like);
  // Every database is listed, even with only bookkeeping tables: "exists" and "has its tables" differ.
  for (const r of listed) {
    if (!shapes.has(r.s)) shapes.set(r.s, new Map<string, TableShape>());
    if (!isIgnored(r.t)) tableOf(shapes, r.s, r.t);
  }
  const names = tables ?? [null];
  for (const name of names) {
    const only = name === null ? '' : ' AND TABLE_NAME = :name';
    const [columns, indexes] = await Promise.all([
      admin.query<{
        s: string;
        t: string;
        c: string;
        type: string;
        nullable: string;
        d: string | null;
        coll: string | null;
        extra: string;
      }>(
        `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, COLUMN_NAME AS c, COLUMN_TYPE AS type, IS_NULLABLE AS nullable, COLUMN_DEFAULT AS d,
         COLLATION_NAME AS coll, EXTRA AS extra
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA LIKE :like${only}`,
        { replacements: { like, name }, type: QueryTypes.SELECT },
      ),
      // Columns and indexes are read at once, on two connections of the admin pool.
      admin.query<{ s: string; t: string; i: string; nu: number; c: string; sub: number | null }>(
        `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, INDEX_NAME AS i, NON_UNIQUE AS nu, COLUMN_NAME AS c, SUB_PART AS sub
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA LIKE :like${only} ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
        { replacements: { like, name }, type: QueryTypes.SELECT },
      ),
    ]);
    for (const r of columns) {
      if (isIgnored(r.t)) continue;
      const extra = r.extra ? ` ${r.extra.toLowerCase()}` : '';
      const collation = r.coll ? ` COLLATE ${r.coll}` : '';
      tableOf(shapes, r.s, r.t).columns.set(
        r.c,
        `${r.type}${collation} ${r.nullable === 'YES' ? 'NULL' : 'NOT NULL'}${r.d === null ? '' : ` DEFAULT ${r.d}`}${extra}`,
      );
    }
    const parts = new Map<string, { unique: boolean; cols: string[] }>();
    for (const r of indexes) {
      if (isIgnored(r.t)) continue;
      const key = JSON.stringify([r.s, r.t, r.i]);
      let p = parts.get(key);
      if (!p) parts.set(key, (p = { unique: Number(r.nu) === 0, cols: [] }));
      p.cols.push(r.sub ? `${r.c}(${r.sub})` : r.c);
    }
    for (const [key, p] of parts) {
      const [s, t, i] = JSON.parse(key) as [string, string, string];
      tableOf(shapes, s, t).indexes.set(i, `${p.unique ? 'UNIQUE ' : ''}(${p.cols.join(', ')})`);
    }
  }
  return shapes;
}

/** Reads one database's schema. */
export async function readShape(admin: Sequelize, db: string): Promise<SchemaShape> {
  return (await readShapes(admin, likePrefix(db).slice(0, -1))).get(db) ?? new Map();
}

/** The differences of `actual` from `expected`, one line each (empty: the same). */
export function diffShapes(actual: SchemaShape, expected: SchemaShape): string[] {
  const out: string[] = [];
  for (const [table, want] of expected) {
    const have = actual.get(table);
    if (!have) {
      out.push(`missing table ${table}`);
      continue;
    }
    for (const [kind, wantMap, haveMap] of [
      ['column', want.columns, have.columns],
      ['index', want.indexes, have.indexes],
    ] as const) {
      for (const [name, spec] of wantMap) {
        const got = haveMap.get(name);
        if (got === undefined) out.push(`${table}: missing ${kind} ${name} ${spec}`);
        else if (got !== spec) out.push(`${table}: ${kind} ${name} is ${got}, expected ${spec}`);
      }
      for (const [name, spec] of haveMap) if (!wantMap.has(name)) out.push(`${table}: unexpected ${kind} ${name} ${spec}`);
    }
  }
  for (const table of actual.keys()) if (!expected.has(table)) out.push(`unexpected table ${table}`);
  return out;
}

/**
 * The applied migrations of many databases of one server, read in a few queries (a UNION over their schema_migrations
 * tables, `batch` databases per query, `lanes` queries at once: the server opens the tables on as many threads as the
 * admin connection pool lends): database → {last, count}. Every database named must have the table.
 */
export async function readApplied(
  admin: Sequelize,
  dbNames: readonly string[],
  batch = 500,
  lanes = 2,
): Promise<Map<string, { last: string | null; count: number }>> {
  const out = new Map<string, { last: string | null; count: number }>();
  const batches: (readonly string[])[] = [];
  for (let i = 0; i < dbNames.length; i += batch) batches.push(dbNames.slice(i, i + batch));
  await mapWithConcurrency(batches, lanes, async (part) => {
    const sql = part
      .map((db) => `SELECT ${admin.escape(db)} AS db, MAX(name) AS last, COUNT(*) AS n FROM ${quoteIdentifier(db)}.${MIGRATIONS_TABLE}`)
      .join(' UNION ALL ');
    for (const r of await admin.query<{ db: string; last: string | null; n: number }>(sql, { type: QueryTypes.SELECT }))
      out.set(r.db, { last: r.last, count: Number(r.n) });
  });
  return out;
}

/** The databases matching `like` that have a schema_migrations table (one information_schema query). */
export async function withMigrationsTable(admin: Sequelize, like: string): Promise<Set<string>> {
  const rows = await admin.query<{ s: string }>(
    'SELECT TABLE_SCHEMA AS s FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE :like AND TABLE_NAME = :table',
    { replacements: { like, table: MIGRATIONS_TABLE }, type: QueryTypes.SELECT },
  );
  return new Set(rows.map((r) => r.s));
}
