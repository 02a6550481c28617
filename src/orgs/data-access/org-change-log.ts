/**
 * The shared DB's log of org changes that could not be published on Redis (migrations/20261207-0001-org-changes.ts):
 * the org events' fallback, read by every process that caches orgs (src/orgs/domain/org-events.ts).
 */
import type { Sequelize } from 'sequelize';
import { selectRows, write } from '../../platform/db/lean-query.js';
import type { OrgChangeLog } from '../domain/org-events.js';

/** How long a logged change is kept: far longer than any reader's window (ORG_CACHE_MAX_AGE_MS). */
const KEEP_HOURS = 1;
/** At most this many rows per read (a log this full means Redis has been unreachable for a while). */
const PAGE = 10_000;

export function createOrgChangeLog(db: Sequelize): OrgChangeLog {
  return {
    limit: PAGE,
    async record({ orgId, reason }) {
      const { insertId } = await write(db, 'INSERT INTO org_changes (org_id, reason) VALUES (?, ?)', [orgId, reason.slice(0, 32)]);
      // Best effort: the change is logged whether or not the old rows go now (the next change removes them).
      await write(db, `DELETE FROM org_changes WHERE created_at < CURRENT_TIMESTAMP(3) - INTERVAL ${KEEP_HOURS} HOUR`, []).catch(
        () => undefined,
      );
      return insertId;
    },
    async recent(windowMs) {
      const rows = await selectRows<{ id: number; org_id: number; reason: string }>(
        db,
        `SELECT id, org_id, reason FROM org_changes WHERE created_at >= CURRENT_TIMESTAMP(3) - INTERVAL ? MICROSECOND ORDER BY id LIMIT ${PAGE}`,
        [Math.ceil(windowMs) * 1000],
      );
      return rows.map((r) => ({ id: Number(r.id), orgId: Number(r.org_id), reason: r.reason }));
    },
  };
}
