/**
 * The reconciler's reads of one database server: pages of candidate rows of many tenants per query (UNION ALL over the
 * server's admin connection), each tenant's rows in (updated_at, id) order with a keyset cursor, so a sweep holds one
 * page at a time however many rows a Redis loss left behind, and never churns the tenant pools.
 *
 *   stale    QUEUED/SENDING, untouched since before the cut-off: a job may be missing
 *   failed   FAILED, changed in [from, cut-off): its settlement (refund, late acceptance) may have been cut off
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import type { ProvisionedOrg } from '../../orgs/index.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';

export type ScanKind = 'stale' | 'failed';

/** One tenant's next page of one kind, after `after` (the last row of its previous page). */
export interface ScanPart {
  org: ProvisionedOrg;
  kind: ScanKind;
  after?: { at: string; id: number };
}

/** A row found: its message, when it last changed (exact, as the server stores it), whether it carries a provider id. */
export interface ScannedRow {
  orgId: number;
  id: number;
  at: string;
  accepted: boolean;
}

/** The window of a sweep: stale rows are older than `cutoff`; FAILED rows changed in [from, cutoff). */
export interface ScanWindow {
  cutoff: Date;
  from: Date;
}

interface RawRow {
  org_id: number;
  failed: number;
  id: number;
  at: string;
  accepted: number;
}

/** The SELECT of one part, its values in order. */
function partQuery(part: ScanPart, window: ScanWindow, pageRows: number): { sql: string; values: unknown[] } {
  const failed = part.kind === 'failed';
  const values: unknown[] = failed ? [window.from, window.cutoff] : [window.cutoff];
  const where = failed ? "status = 'FAILED' AND updated_at >= ? AND updated_at < ?" : "status IN ('QUEUED', 'SENDING') AND updated_at < ?";
  let keyset = '';
  if (part.after) {
    keyset = ' AND (updated_at > ? OR (updated_at = ? AND id > ?))';
    values.push(part.after.at, part.after.at, part.after.id);
  }
  const sql = `(SELECT ${Number(part.org.id)} AS org_id, ${failed ? 1 : 0} AS failed, id,
      DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') AS at, ${failed ? 'provider_message_id IS NOT NULL' : '0'} AS accepted
    FROM ${quoteIdentifier(part.org.dbName)}.messages WHERE ${where}${keyset} ORDER BY updated_at, id LIMIT ${pageRows})`;
  return { sql, values };
}

/** One query for all `parts` (tenants of one server): each part's page of at most `pageRows` rows. */
export async function readPages(
  admin: Sequelize,
  parts: readonly ScanPart[],
  window: ScanWindow,
  pageRows: number,
): Promise<Map<ScanPart, ScannedRow[]>> {
  const queries = parts.map((p) => partQuery(p, window, pageRows));
  const raw = await admin.query<RawRow>(queries.map((q) => q.sql).join(' UNION ALL '), {
    replacements: queries.flatMap((q) => q.values),
    type: QueryTypes.SELECT,
  });
  const byKey = new Map(parts.map((p) => [`${p.org.id}:${p.kind}`, p]));
  const pages = new Map<ScanPart, ScannedRow[]>(parts.map((p) => [p, []]));
  for (const r of raw) {
    const part = byKey.get(`${Number(r.org_id)}:${Number(r.failed) ? 'failed' : 'stale'}`)!;
    pages.get(part)!.push({ orgId: Number(r.org_id), id: Number(r.id), at: String(r.at), accepted: Number(r.accepted) === 1 });
  }
  return pages;
}

/** The continuation of a part whose page was full; undefined when it had no more rows. */
export function nextPart(part: ScanPart, page: readonly ScannedRow[], pageRows: number): ScanPart | undefined {
  const last = page[page.length - 1];
  return page.length === pageRows && last ? { ...part, after: { at: last.at, id: last.id } } : undefined;
}

/** The time a scanned row last changed (the server's UTC DATETIME as text). */
export const rowTime = (row: ScannedRow) => new Date(`${row.at.replace(' ', 'T')}Z`).getTime();
