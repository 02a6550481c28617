/**
 * Copying a tenant's tables between two servers, for a move: the bulk copy in primary-key order, carrying changed
 * rows over again, and checksums to verify. Every data table has an integer primary key `id` (the mover checks).
 *
 * INSERTs are bounded by bytes as well as rows: one statement never exceeds a share of the target's
 * `max_allowed_packet` (100 KB e-mail bodies × 1,000 rows would be 100 MB), and reads shrink or grow with the rows'
 * size, so memory stays bounded too. Values are copied as stored (DATETIMEs as their strings).
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import { MIGRATIONS_TABLE } from '../../platform/db/migrator.js';
import { AS_STORED, selectRows, write } from '../../platform/db/lean-query.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';

type Row = Record<string, unknown>;

/** A table to move: its name and columns (in order). */
export interface DataTable {
  name: string;
  columns: string[];
}

export interface CopyLimits {
  /** Rows per INSERT at most. */
  rows: number;
  /** Bytes per INSERT at most (below the target's max_allowed_packet). */
  bytes: number;
}

/** Tables that belong to the machinery, not the tenant's data: never copied (each copy has its own). */
const isOurs = (table: string) => table.startsWith('tenancy_') || table === MIGRATIONS_TABLE;

/** The names of the tenant's data tables (whatever their keys: what a rollback removes triggers from). */
export async function dataTableNames(admin: Sequelize, dbName: string): Promise<string[]> {
  const rows = await admin.query<{ t: string }>(
    "SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'",
    { replacements: { db: dbName }, type: QueryTypes.SELECT },
  );
  return rows.map((r) => r.t).filter((t) => !isOurs(t));
}

/** The tenant's data tables with their columns; an error names a table without an integer primary key `id`. */
export async function dataTables(admin: Sequelize, dbName: string): Promise<DataTable[]> {
  // Two lookups by schema, not a join: MariaDB would scan every database of the server for the joined side.
  const base = new Set(await dataTableNames(admin, dbName));
  const cols = (
    await admin.query<{ t: string; c: string; key: string; type: string }>(
      `SELECT TABLE_NAME AS t, COLUMN_NAME AS c, COLUMN_KEY AS \`key\`, DATA_TYPE AS type
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME, ORDINAL_POSITION`,
      { replacements: { db: dbName }, type: QueryTypes.SELECT },
    )
  ).filter((col) => base.has(col.t));
  const tables = new Map<string, DataTable>();
  const keyed = new Set<string>();
  for (const col of cols) {
    if (isOurs(col.t)) continue;
    if (!tables.has(col.t)) tables.set(col.t, { name: col.t, columns: [] });
    tables.get(col.t)!.columns.push(col.c);
    if (col.c === 'id' && col.key === 'PRI' && /int$/i.test(col.type)) keyed.add(col.t);
  }
  for (const t of tables.keys())
    if (!keyed.has(t))
      throw new Error(`table ${t} has no integer primary key \`id\`: a move cannot copy it in batches or track its changes`);
  return [...tables.values()];
}

/** The target's max_allowed_packet, and INSERT limits well within it. */
export async function copyLimits(target: Sequelize, maxRows: number): Promise<CopyLimits> {
  const [r] = await target.query<{ p: number }>('SELECT @@max_allowed_packet AS p', { type: QueryTypes.SELECT });
  const packet = Number(r?.p ?? 4 * 1024 * 1024);
  return { rows: maxRows, bytes: Math.max(64 * 1024, Math.min(Math.floor(packet / 2), 16 * 1024 * 1024)) };
}

/** A generous estimate of a value's size in an INSERT (escaping can double a string's bytes in the worst case). */
function sizeOf(v: unknown): number {
  if (v === null || v === undefined) return 4;
  if (typeof v === 'string') return 2 * Buffer.byteLength(v) + 3;
  if (Buffer.isBuffer(v)) return 2 * v.length + 3;
  return 24;
}
const rowSize = (r: Row, columns: string[]) => columns.reduce((n, c) => n + sizeOf(r[c]) + 1, 8);

/** INSERTs `rows` into `table` on `to`, split so that no statement passes the limits. */
export async function insertRows(
  to: Sequelize,
  table: DataTable,
  rows: Row[],
  limits: CopyLimits,
  packetMax = limits.bytes * 2,
): Promise<void> {
  const head = `INSERT INTO ${quoteIdentifier(table.name)} (${table.columns.map(quoteIdentifier).join(', ')}) VALUES ?`;
  let chunk: unknown[][] = [];
  let bytes = head.length;
  const flush = async () => {
    if (chunk.length) await write(to, head, [chunk]);
    chunk = [];
    bytes = head.length;
  };
  for (const r of rows) {
    const size = rowSize(r, table.columns);
    if (size + head.length > packetMax)
      throw new Error(
        `row ${String(r.id)} of ${table.name} is about ${size} bytes, more than the target server's max_allowed_packet (${packetMax}): raise it there`,
      );
    if (chunk.length && (chunk.length >= limits.rows || bytes + size > limits.bytes)) await flush();
    chunk.push(table.columns.map((c) => r[c]));
    bytes += size;
  }
  await flush();
}

/**
 * Copies every row of `table` in primary-key order. Reads grow from 100 rows while rows are small and shrink when they
 * are big, so one read holds about `limits.bytes` (the next read overlaps the current INSERT). Answers the rows copied.
 */
export async function bulkCopy(
  from: Sequelize,
  to: Sequelize,
  table: DataTable,
  limits: CopyLimits,
  between?: () => Promise<void>,
): Promise<number> {
  const t = quoteIdentifier(table.name);
  const cols = table.columns.map(quoteIdentifier).join(', ');
  let after = 0;
  let take = Math.min(100, limits.rows);
  let copied = 0;
  const read = (afterId: number, n: number) =>
    selectRows<Row>(from, `SELECT ${cols} FROM ${t} WHERE id > ? ORDER BY id LIMIT ?`, [afterId, n], AS_STORED);
  let next = read(after, take);
  for (;;) {
    const rows = await next;
    if (rows.length === 0) break;
    after = Number(rows.at(-1)!.id);
    const avg = rows.reduce((n, r) => n + rowSize(r, table.columns), 0) / rows.length;
    take = Math.max(1, Math.min(limits.rows, take * 2, Math.floor(limits.bytes / Math.max(1, avg))));
    next = read(after, take);
    next.catch(() => undefined); // awaited on the next turn; a failure of the write below must not leave it unhandled
    await insertRows(to, table, rows, limits);
    copied += rows.length;
    await between?.();
  }
  return copied;
}

/** Copies the current state of rows `ids` of `table` again: deleted where the source has none, replaced otherwise. */
export async function applyRows(from: Sequelize, to: Sequelize, table: DataTable, ids: number[], limits: CopyLimits): Promise<void> {
  const t = quoteIdentifier(table.name);
  const cols = table.columns.map(quoteIdentifier).join(', ');
  for (let i = 0; i < ids.length; i += 500) {
    const some = ids.slice(i, i + 500);
    const rows = await selectRows<Row>(from, `SELECT ${cols} FROM ${t} WHERE id IN (?) ORDER BY id`, [some], AS_STORED);
    await write(to, `DELETE FROM ${t} WHERE id IN (?)`, [some]);
    await insertRows(to, table, rows, limits);
  }
}

/** One row's fingerprint, in SQL: every column (NULL told apart from empty) through MD5. */
const rowHash = (table: DataTable) =>
  `MD5(CONCAT_WS('#', ${table.columns.map((c) => `ISNULL(${quoteIdentifier(c)}), ${quoteIdentifier(c)}`).join(', ')}))`;

/** Count and order-free checksum of a whole table, as checksumRange computes them (one scan). */
export const tableChecksumSql = (table: DataTable) =>
  `SELECT COUNT(*) AS n, CAST(COALESCE(BIT_XOR(CAST(CONV(LEFT(${rowHash(table)}, 16), 16, 10) AS UNSIGNED)), 0) AS CHAR) AS sum
   FROM ${quoteIdentifier(table.name)}`;

/** Count, and an order-free 64-bit checksum (XOR of the rows' MD5 prefixes), of rows with ids in [lo, hi]. */
export async function checksumRange(db: Sequelize, table: DataTable, lo: number, hi: number): Promise<{ n: number; sum: string }> {
  const [r] = await selectRows<{ n: number; sum: string }>(
    db,
    `SELECT COUNT(*) AS n, CAST(COALESCE(BIT_XOR(CAST(CONV(LEFT(${rowHash(table)}, 16), 16, 10) AS UNSIGNED)), 0) AS CHAR) AS sum
     FROM ${quoteIdentifier(table.name)} WHERE id BETWEEN ? AND ?`,
    [lo, hi],
    AS_STORED,
  );
  return { n: Number(r?.n ?? 0), sum: String(r?.sum ?? '0') };
}

/** Each row's fingerprint, by id: rows with ids in [lo, hi], or the rows `ids`. */
export async function rowHashes(
  db: Sequelize,
  table: DataTable,
  where: { lo: number; hi: number } | { ids: number[] },
): Promise<Map<number, string>> {
  const t = quoteIdentifier(table.name);
  const rows =
    'ids' in where
      ? where.ids.length
        ? await selectRows<{ id: number; h: string }>(
            db,
            `SELECT id, ${rowHash(table)} AS h FROM ${t} WHERE id IN (?)`,
            [where.ids],
            AS_STORED,
          )
        : []
      : await selectRows<{ id: number; h: string }>(
          db,
          `SELECT id, ${rowHash(table)} AS h FROM ${t} WHERE id BETWEEN ? AND ?`,
          [where.lo, where.hi],
          AS_STORED,
        );
  return new Map(rows.map((r) => [Number(r.id), r.h]));
}

/** Ids whose rows differ between two fingerprint maps (present on one side only, or different). */
export function differing(a: Map<number, string>, b: Map<number, string>): number[] {
  const out: number[] = [];
  for (const [id, h] of a) if (b.get(id) !== h) out.push(id);
  for (const id of b.keys()) if (!a.has(id)) out.push(id);
  return out;
}

/** The highest id of a table (0 when empty): one index lookup. */
export async function topOf(db: Sequelize, table: DataTable): Promise<number> {
  const [r] = await selectRows<{ top: number }>(db, `SELECT COALESCE(MAX(id), 0) AS top FROM ${quoteIdentifier(table.name)}`, []);
  return Number(r?.top ?? 0);
}
