/**
 * The tenant backup file: gzip-compressed JSON Lines, written and read as streams (memory bounded by one batch of rows).
 *
 *   line 1      header   {"format":"tenancy-tenant-backup","version":1,"orgId":7,"orgUid":"…","orgName":"…",
 *                          "createdAt":"…","schema":["20261122-0001-messages",…],"tables":[{"name":"messages","columns":[…]}]}
 *   lines 2…n   rows     ["messages", v1, v2, …]   one per row, values in the header's column order, tables one after
 *                        the other in primary-key order; DATETIMEs as stored ("2026-12-06 16:14:19.123"), binary values
 *                        as {"$b64":"…"}
 *   last line   trailer  {"end":true,"counts":{"messages":120},"checksums":{"messages":"1234…"},"sha256":"…"}
 *
 * `schema` is the tenant's applied migrations (its schema version is the last); `counts` and `checksums` are each
 * table's row count and order-free checksum computed by MySQL in the same snapshot (table-copy.ts), so a restore can
 * compare the database it filled with what was read; `sha256` is the SHA-256 of every byte before the trailer line.
 * A file whose gzip stream ends early, or that has no trailer, is truncated; one whose bytes or lines do not add up is
 * corrupt; one that does not start with the header is not a backup.
 */
import { createHash, type Hash } from 'node:crypto';
import { pipeline, type Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { unprocessable, type AppError } from '../../platform/lib/errors.js';
import type { DataTable } from './table-copy.js';

export const BACKUP_FORMAT = 'tenancy-tenant-backup';
export const BACKUP_FORMAT_VERSION = 1;
/** A line longer than this is not one this code wrote (a row is at most a few MB: MEDIUMTEXT bodies). */
const MAX_LINE = 64 * 1024 * 1024;

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: number;
  orgId: number;
  orgUid: string;
  orgName: string;
  createdAt: string;
  /** The applied tenant migrations, oldest first: the schema version is the last. */
  schema: string[];
  tables: DataTable[];
}

export interface BackupTrailer {
  end: true;
  counts: Record<string, number>;
  checksums: Record<string, string>;
  sha256: string;
}

type Row = Record<string, unknown>;

/** A value as JSON: Buffers as {"$b64": …}, everything else as is (numbers, strings, null). */
export const encodeValue = (v: unknown): unknown => (Buffer.isBuffer(v) ? { $b64: v.toString('base64') } : v);
const decodeValue = (v: unknown): unknown =>
  v !== null && typeof v === 'object' && typeof (v as { $b64?: unknown }).$b64 === 'string'
    ? Buffer.from((v as { $b64: string }).$b64, 'base64')
    : v;

/** Accumulates the SHA-256 of the lines before the trailer while they are produced. */
export function lineHasher(): { line(text: string): string; chunk(lines: string): string; digest(): string } {
  const hash: Hash = createHash('sha256');
  return {
    line(text) {
      const l = `${text}\n`;
      hash.update(l);
      return l;
    },
    /** Several lines at once, each ending with its newline. */
    chunk(lines) {
      hash.update(lines);
      return lines;
    },
    digest: () => hash.digest('hex'),
  };
}

export const invalid = (message: string): AppError => unprocessable('BACKUP_INVALID', message);
export const corrupt = (message: string): AppError => unprocessable('BACKUP_CORRUPT', message);
export const truncated = (message: string): AppError => unprocessable('BACKUP_TRUNCATED', message);

/** The gunzipped stream's lines (without their newline); a last line without one is answered with `partial`. */
async function* linesOf(gz: Readable): AsyncGenerator<{ text: string; partial: boolean }> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of gz) {
    const text = rest + decoder.write(chunk as Buffer);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      yield { text: text.slice(start, nl), partial: false };
      start = nl + 1;
    }
    rest = text.slice(start);
    if (rest.length > MAX_LINE) throw corrupt(`a line of more than ${MAX_LINE} bytes: not a backup this code wrote`);
  }
  rest += decoder.end();
  if (rest) yield { text: rest, partial: true };
}

export interface ReadOptions {
  /** Called with each batch of rows of one table, in file order (for a restore's load). */
  onRows?: (table: DataTable, rows: Row[]) => Promise<void>;
  /** Rows per onRows batch at most (default 1,000). */
  batchRows?: number;
}

/**
 * Reads a whole backup: the header, every row (handed to `onRows` in batches), the trailer, and checks them
 * (sha256, counts, one trailer at the very end). Throws BACKUP_INVALID, BACKUP_CORRUPT or BACKUP_TRUNCATED.
 */
export async function readBackup(file: Readable, opts: ReadOptions = {}): Promise<{ header: BackupHeader; trailer: BackupTrailer }> {
  const gz = pipeline(file, createGunzip(), () => undefined); // an error of either ends the iteration below with it
  let gzipMagic: boolean | undefined; // the first bytes are gzip's (1f 8b): a damaged backup, not something else
  file.once('data', (chunk: Buffer) => (gzipMagic = chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b));
  const hasher = lineHasher();
  let header: BackupHeader | undefined;
  let trailer: BackupTrailer | undefined;
  const byName = new Map<string, DataTable>();
  const counts: Record<string, number> = {};
  let batch: Row[] = [];
  let batchTable: DataTable | undefined;
  const maxBatch = opts.batchRows ?? 1000;
  const flush = async () => {
    if (batch.length && batchTable) await opts.onRows?.(batchTable, batch);
    batch = [];
  };
  try {
    for await (const { text, partial } of linesOf(gz)) {
      if (!header) {
        header = parseHeader(text);
        for (const t of header.tables) byName.set(t.name, t);
        hasher.line(text);
        continue;
      }
      if (trailer) throw corrupt('data after the trailer line');
      if (partial) throw truncated('the file ends in the middle of a line');
      if (text.startsWith('{')) {
        trailer = parseTrailer(text);
        continue;
      }
      hasher.line(text);
      let values: unknown;
      try {
        values = JSON.parse(text);
      } catch {
        throw corrupt(`line ${Object.values(counts).reduce((a, b) => a + b, 2)} is not JSON`);
      }
      if (!Array.isArray(values) || typeof values[0] !== 'string') throw corrupt('a row line is not ["table", values…]');
      const table = byName.get(values[0]);
      if (!table) throw corrupt(`a row of table ${JSON.stringify(values[0])}, which the header does not list`);
      if (values.length !== table.columns.length + 1) throw corrupt(`a row of ${table.name} with ${values.length - 1} values`);
      if (table !== batchTable || batch.length >= maxBatch) {
        await flush();
        batchTable = table;
      }
      const row: Row = {};
      table.columns.forEach((c, i) => (row[c] = decodeValue(values[i + 1])));
      batch.push(row);
      counts[table.name] = (counts[table.name] ?? 0) + 1;
    }
    await flush();
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'Z_BUF_ERROR') throw truncated('the compressed stream ends early (a partial copy or upload)');
    if (code === 'Z_DATA_ERROR' || code === 'Z_NEED_DICT')
      throw gzipMagic
        ? corrupt(`the compressed data is damaged (${(err as Error).message})`)
        : invalid('not a tenant backup (not gzip data)');
    throw err;
  }
  if (!header) throw invalid('not a tenant backup (empty)');
  if (!trailer) throw truncated('the file has no trailer line (a partial copy, or a backup that did not finish)');
  if (trailer.sha256 !== hasher.digest()) throw corrupt('the checksum does not match the contents');
  for (const t of header.tables)
    if ((trailer.counts[t.name] ?? 0) !== (counts[t.name] ?? 0))
      throw corrupt(`${t.name}: ${counts[t.name] ?? 0} rows in the file, the trailer says ${trailer.counts[t.name] ?? 0}`);
  return { header, trailer };
}

function parseHeader(text: string): BackupHeader {
  let h: Partial<BackupHeader>;
  try {
    h = JSON.parse(text) as Partial<BackupHeader>;
  } catch {
    throw invalid('not a tenant backup (the first line is not its header)');
  }
  if (h?.format !== BACKUP_FORMAT) throw invalid('not a tenant backup (the first line is not its header)');
  if (h.version !== BACKUP_FORMAT_VERSION)
    throw invalid(`backup format version ${String(h.version)} is not one this code reads (${BACKUP_FORMAT_VERSION})`);
  const ok =
    Number.isSafeInteger(h.orgId) &&
    typeof h.orgUid === 'string' &&
    Array.isArray(h.schema) &&
    h.schema.length > 0 &&
    h.schema.every((s) => typeof s === 'string') &&
    Array.isArray(h.tables) &&
    h.tables.every((t) => typeof t?.name === 'string' && Array.isArray(t.columns) && t.columns.includes('id'));
  if (!ok) throw corrupt('the header is incomplete');
  return h as BackupHeader;
}

function parseTrailer(text: string): BackupTrailer {
  let t: Partial<BackupTrailer>;
  try {
    t = JSON.parse(text) as Partial<BackupTrailer>;
  } catch {
    throw corrupt('the trailer line is not JSON');
  }
  if (t?.end !== true || typeof t.sha256 !== 'string' || typeof t.counts !== 'object' || typeof t.checksums !== 'object')
    throw corrupt('the trailer line is incomplete');
  return t as BackupTrailer;
}
