/**
 * A tenant's data for portability: its org, its messages and its ledger entries as JSON Lines, streamed in pages of
 * 1,000 (memory is one page, whatever the tenant's size). Documented in docs/operations.md ("Exporting a tenant"):
 *
 *   {"type":"org","format":"tenancy-tenant-export","version":1,"exportedAt":"…","id":7,"name":"…","status":"ACTIVE","creditBalance":42,…}
 *   {"type":"message","id":1,"to":"+1555…","channel":"sms","body":"…","status":"SENT","cost":1,…}        one per message, by id
 *   {"type":"ledger","id":12,"kind":"debit","amount":-1,"balanceAfter":41,"messageId":1,"reference":"…",…}  one per entry, by id
 *   {"type":"end","counts":{"messages":120,"ledger":121}}
 *
 * Each page is read on its own (the export is not one snapshot: `bin/tenant backup` is). The messages are read over
 * the server's admin link, so a dropped tenant (kept for TENANT_RETENTION_DAYS, its own user locked) can still be exported.
 */
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { notFound, conflict } from '../../platform/lib/errors.js';
import { isProvisioned, type Ledger, type OrgRepository, type ServerRegistry } from '../../orgs/index.js';
import { messagesAfter } from '../data-access/messages.repository.js';
import { messageExportView } from './message.js';

export const EXPORT_FORMAT = 'tenancy-tenant-export';
const PAGE = 1000;

export interface ExportResult {
  orgId: number;
  counts: { messages: number; ledger: number };
}

export function createTenantExport(deps: {
  repo: Pick<OrgRepository, 'get'>;
  ledger: Pick<Ledger, 'page'>;
  servers: Pick<ServerRegistry, 'adminForDatabase'>;
}) {
  async function* lines(orgId: number, counts: ExportResult['counts']): AsyncGenerator<string> {
    const org = await deps.repo.get(orgId);
    if (!org) throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
    if (!isProvisioned(org)) throw conflict('ORG_NOT_READY', `org ${orgId} has no database (${org.status})`);
    const { id, name, uid: _uid, status, creditBalance, createdAt, updatedAt } = org;
    yield `${JSON.stringify({ type: 'org', format: EXPORT_FORMAT, version: 1, exportedAt: new Date(), id, name, status, creditBalance, createdAt, updatedAt })}\n`;
    const db = await deps.servers.adminForDatabase(org.dbServerId, org.dbName, 1);
    try {
      for (let after = 0; ;) {
        const page = await messagesAfter(db, after, PAGE);
        if (!page.length) break;
        yield page.map((m) => `${JSON.stringify({ type: 'message', ...messageExportView(m) })}\n`).join('');
        counts.messages += page.length;
        after = Number(page.at(-1)!.id);
      }
    } finally {
      await db.close().catch(() => undefined);
    }
    for (let after = 0; ;) {
      const page = await deps.ledger.page(orgId, after, PAGE);
      if (!page.length) break;
      yield page.map(({ orgId: _org, ...e }) => `${JSON.stringify({ type: 'ledger', ...e })}\n`).join('');
      counts.ledger += page.length;
      after = page.at(-1)!.id;
    }
    yield `${JSON.stringify({ type: 'end', counts })}\n`;
  }

  return {
    /** Writes the export to `out` (left open when `end` is false: stdout). */
    async exportTo(orgId: number, out: Writable, opts: { end?: boolean } = {}): Promise<ExportResult> {
      const counts = { messages: 0, ledger: 0 };
      await pipeline(Readable.from(lines(orgId, counts)), out, { end: opts.end ?? true });
      return { orgId, counts };
    },
  };
}

export type TenantExport = ReturnType<typeof createTenantExport>;
