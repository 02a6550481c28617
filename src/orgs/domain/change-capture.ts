/**
 * What an online move installs in the tenant's database on its old server while it copies: a change log and a write
 * fence, both kept by triggers, so they hold for every writer (API, workers, an operator's session) whatever MySQL
 * account or role it uses, and they outlive the mover if it crashes.
 *
 * - Change log (`tenancy_move_log`): an AFTER INSERT/UPDATE/DELETE trigger on each data table records (table, id) of
 *   every row written, in the writer's own transaction: one entry per row, its `ver` bumped by each later write. The
 *   mover consumes an entry by deleting it at the version it applied, so a write that lands meanwhile keeps it (never
 *   a sequence watermark: a number taken at insert shows up late when its transaction commits late). The log has no
 *   AUTO_INCREMENT on purpose: an auto-increment insert in a trigger changes the insert id the writer's own statement
 *   reports (a new message's id, the attempt number of a claim). Rows are never trusted to say they changed: not every
 *   write path sets `updated_at` (an expired Idempotency-Key is cleared without it, a late provider id is recorded
 *   without it), and a trigger cannot forget one.
 * - Write fence (`tenancy_write_fence`, one row): the same triggers read it with a shared lock and refuse the write
 *   (SIGNAL, `TENANT_WRITES_PAUSED`) while `paused_until` is in the future. Pausing is an UPDATE of that row: it waits
 *   for every write transaction that already passed the check to commit (they hold the shared lock) and every later
 *   write waits for the UPDATE, then sees the pause. So once pause() returns, the old copy takes no write, and the
 *   pause lapses by itself at `paused_until` if the mover dies; only after the switch is it made permanent.
 * Reads are never affected.
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import { WRITES_PAUSED } from '../../platform/lib/infrastructure-errors.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';

export const LOG_TABLE = 'tenancy_move_log';
export const FENCE_TABLE = 'tenancy_write_fence';
const EVENTS = [
  ['INSERT', 'NEW.id', 'i'],
  ['UPDATE', 'NEW.id', 'u'],
  ['DELETE', 'OLD.id', 'd'],
] as const;
/** Far future: the old copy never takes a write again (set right before the switch). */
const FOREVER = '9999-12-31 23:59:59.999';
/** MySQL/MariaDB errno of a lock wait timeout (DDL behind a long transaction, or the fence behind a long write). */
const ER_LOCK_WAIT_TIMEOUT = 1205;

const triggerName = (table: string, suffix: string) => quoteIdentifier(`tenancy_mv_${table.slice(0, 40)}_${suffix}`);
const errnoOf = (err: unknown): number | undefined => {
  const e = err as { errno?: number; original?: { errno?: number }; parent?: { errno?: number } };
  return e.original?.errno ?? e.parent?.errno ?? e.errno;
};

/** One change to carry over: a row of `table` whose current state (or absence) must be copied again. */
export interface Change {
  table: string;
  id: number;
  /** Bumped by every write of the row: consumed only at the version applied. */
  ver: number;
}

/** Raised when the fence could not be made permanent because its pause had lapsed (writes may have resumed). */
export class FenceLapsedError extends Error {
  constructor() {
    super('the write pause lapsed before the switch; the tenant kept writing to its old copy');
    this.name = 'FenceLapsedError';
  }
}

/**
 * Change capture and the write fence on one tenant database. `db` must be an admin connection to that database with
 * a single connection (DDL and the fence set session timeouts first).
 */
export function createChangeCapture(db: Sequelize, opts: { ddlLockWaitSec?: number; fenceLockWaitSec?: number } = {}) {
  const ddlWait = opts.ddlLockWaitSec ?? 2;
  const fenceWait = opts.fenceLockWaitSec ?? 2;

  /** Runs a DDL statement with a short metadata-lock wait, retried: it must never queue the tenant's statements for long. */
  async function ddl(sql: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await db.query(`SET SESSION lock_wait_timeout = ${ddlWait}`);
        await db.query(sql);
        return;
      } catch (err) {
        if (errnoOf(err) !== ER_LOCK_WAIT_TIMEOUT || attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  return {
    /** Creates the log, the fence (not paused) and the triggers on `tables` (each with an integer primary key `id`). */
    async install(tables: string[]): Promise<void> {
      await db.query(
        `CREATE TABLE IF NOT EXISTS ${LOG_TABLE} (tbl VARCHAR(64) NOT NULL, row_id BIGINT UNSIGNED NOT NULL,
           ver INT UNSIGNED NOT NULL DEFAULT 1, PRIMARY KEY (tbl, row_id))`,
      );
      await db.query(`CREATE TABLE IF NOT EXISTS ${FENCE_TABLE} (id TINYINT UNSIGNED NOT NULL PRIMARY KEY, paused_until DATETIME(3) NULL)`);
      await db.query(`INSERT INTO ${FENCE_TABLE} (id, paused_until) VALUES (1, NULL) ON DUPLICATE KEY UPDATE paused_until = NULL`);
      for (const table of tables) {
        for (const [event, row, suffix] of EVENTS) {
          await ddl(`DROP TRIGGER IF EXISTS ${triggerName(table, suffix)}`);
          await ddl(
            `CREATE TRIGGER ${triggerName(table, suffix)} AFTER ${event} ON ${quoteIdentifier(table)} FOR EACH ROW
             BEGIN
               DECLARE v_paused_until DATETIME(3) DEFAULT NULL;
               SELECT paused_until INTO v_paused_until FROM ${FENCE_TABLE} WHERE id = 1 LOCK IN SHARE MODE;
               IF v_paused_until IS NOT NULL AND v_paused_until > NOW(3) THEN
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '${WRITES_PAUSED}: the tenant database is being moved';
               END IF;
               INSERT INTO ${LOG_TABLE} (tbl, row_id) VALUES (${db.escape(table)}, ${row}) ON DUPLICATE KEY UPDATE ver = ver + 1;
             END`,
          );
        }
      }
    },

    /** Removes the triggers, the log and the fence (after a move that did not switch): writes flow as before. */
    async remove(tables: string[]): Promise<void> {
      for (const table of tables) for (const [, , suffix] of EVENTS) await ddl(`DROP TRIGGER IF EXISTS ${triggerName(table, suffix)}`);
      await ddl(`DROP TABLE IF EXISTS ${LOG_TABLE}`);
      await ddl(`DROP TABLE IF EXISTS ${FENCE_TABLE}`);
    },

    /** Up to `limit` changes not yet consumed (a change committed late is here once it commits). */
    async pending(limit: number): Promise<Change[]> {
      const rows = await db.query<{ tbl: string; row_id: number; ver: number }>(`SELECT tbl, row_id, ver FROM ${LOG_TABLE} LIMIT :limit`, {
        replacements: { limit },
        type: QueryTypes.SELECT,
      });
      return rows.map((r) => ({ table: r.tbl, id: Number(r.row_id), ver: Number(r.ver) }));
    },

    /** How many changes wait. */
    async backlog(): Promise<number> {
      const [r] = await db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${LOG_TABLE}`, { type: QueryTypes.SELECT });
      return Number(r?.n ?? 0);
    },

    /** Forgets changes that were applied, each at the version applied (a row written again since stays pending). */
    async consumed(changes: Change[]): Promise<void> {
      // Exact row locks only (no gap locks): a writer's trigger recording another row never waits for this DELETE.
      await db.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
      for (let i = 0; i < changes.length; i += 500) {
        const some = changes.slice(i, i + 500);
        await db.query(`DELETE FROM ${LOG_TABLE} WHERE (tbl, row_id, ver) IN (${some.map(() => '(?, ?, ?)').join(', ')})`, {
          replacements: some.flatMap((c) => [c.table, c.id, c.ver]),
        });
      }
    },

    /**
     * Pauses the tenant's writes on this copy for at most `forMs` (the pause lapses by itself after that). Returns once
     * every write that had passed the fence has committed: from then on the copy takes no write.
     */
    async pause(forMs: number): Promise<void> {
      await db.query(`SET SESSION innodb_lock_wait_timeout = ${fenceWait}`);
      await db.query(`UPDATE ${FENCE_TABLE} SET paused_until = NOW(3) + INTERVAL :us MICROSECOND WHERE id = 1`, {
        replacements: { us: Math.round(forMs * 1000) },
      });
    },

    /** Makes a pause that has not lapsed permanent (right before the switch); FenceLapsedError when it had lapsed. */
    async seal(): Promise<void> {
      const [, meta] = await db.query(`UPDATE ${FENCE_TABLE} SET paused_until = :forever WHERE id = 1 AND paused_until > NOW(3)`, {
        replacements: { forever: FOREVER },
      });
      if ((meta as { affectedRows?: number }).affectedRows !== 1) throw new FenceLapsedError();
    },

    /** Lets writes in again (a pause that did not end in a switch). */
    async resume(): Promise<void> {
      await db.query(`UPDATE ${FENCE_TABLE} SET paused_until = NULL WHERE id = 1`);
    },
  };
}

export type ChangeCapture = ReturnType<typeof createChangeCapture>;
