/** Every SQL statement on schema_rollouts and schema_rollout_tenants (the shared DB). */
import { MIGRATABLE_STATUSES } from '../domain/org.js';
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { TenantDbRef } from './schema-versions.js';

export const ROLLOUT_STATES = ['running', 'paused', 'halted', 'done'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export type ItemState = 'pending' | 'running' | 'done' | 'failed';
/** How a tenant's attempt ended: `skipped` — its org was dropped (or is no longer operational) meanwhile. */
export type ItemResult = 'ok' | 'failed' | 'locked' | 'skipped';

export interface Rollout {
  id: number;
  target: string;
  state: RolloutState;
  scope: 'fleet' | 'tenants';
  maxFailures: number;
  skipFailing: boolean;
  concurrency: number;
  canary: number;
  note: string | null;
  supersededBy: number | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
}

export interface RolloutItem extends TenantDbRef {
  id: number;
  wave: number;
  state: ItemState;
  result: ItemResult | null;
  migrations: string[];
  error: string | null;
  ms: number | null;
  /** The org's current location (it may have moved since the rollout was made) and status; null: no org. */
  org: { serverId: number | null; dbName: string | null; status: string } | null;
}

export interface FinishedItem {
  item: Pick<RolloutItem, 'id' | 'serverId' | 'dbName' | 'orgId' | 'wave'>;
  rolloutId: number;
  state: 'done' | 'failed';
  result: ItemResult;
  migrations: string[];
  error: string | null;
  ms: number;
}

export type RolloutCounts = Record<ItemState, number>;

interface RolloutRow {
  id: number;
  target: string;
  state: RolloutState;
  scope: 'fleet' | 'tenants';
  max_failures: number;
  skip_failing: number;
  concurrency: number;
  canary: number;
  note: string | null;
  superseded_by: number | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

const toRollout = (r: RolloutRow): Rollout => ({
  id: r.id,
  target: r.target,
  state: r.state,
  scope: r.scope,
  maxFailures: r.max_failures,
  skipFailing: Boolean(r.skip_failing),
  concurrency: r.concurrency,
  canary: r.canary,
  note: r.note,
  supersededBy: r.superseded_by,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  finishedAt: r.finished_at,
});

const ITEM_SELECT = `SELECT i.*, o.db_server_id AS org_server_id, o.db_name AS org_db_name, o.status AS org_status
  FROM schema_rollout_tenants i LEFT JOIN orgs o ON o.id = i.org_id`;

/** Creates the rollout repository. */
export function createRolloutRepository(db: Sequelize) {
  const select = <T extends object>(sql: string, replacements: unknown[] | Record<string, unknown>, transaction?: Transaction) =>
    db.query<T>(sql, { replacements, type: QueryTypes.SELECT, transaction });
  const affected = (meta: unknown) => (meta as { affectedRows?: number }).affectedRows ?? 0;

  const toItem = (r: Record<string, unknown>): RolloutItem => ({
    id: Number(r.id),
    serverId: Number(r.db_server_id),
    dbName: r.db_name as string,
    orgId: r.org_id === null ? null : Number(r.org_id),
    wave: Number(r.wave),
    state: r.state as ItemState,
    result: r.result as ItemResult | null,
    migrations: r.migrations ? (JSON.parse(r.migrations as string) as string[]) : [],
    error: r.error as string | null,
    ms: r.ms === null ? null : Number(r.ms),
    org:
      r.org_status === null || r.org_status === undefined
        ? null
        : {
            serverId: r.org_server_id === null ? null : Number(r.org_server_id),
            dbName: r.org_db_name as string | null,
            status: r.org_status as string,
          },
  });

  return {
    /** Makes a rollout with its databases (each with its wave) in one transaction; answers its id. */
    async create(
      r: Pick<Rollout, 'target' | 'scope' | 'maxFailures' | 'skipFailing' | 'concurrency' | 'canary'>,
      items: readonly (TenantDbRef & { wave: number })[],
    ): Promise<number> {
      return db.transaction(async (transaction) => {
        const [id] = await db.query(
          `INSERT INTO schema_rollouts (target, scope, max_failures, skip_failing, concurrency, canary) VALUES (?, ?, ?, ?, ?, ?)`,
          { replacements: [r.target, r.scope, r.maxFailures, r.skipFailing ? 1 : 0, r.concurrency, r.canary], transaction },
        );
        for (let i = 0; i < items.length; i += 1000) {
          const chunk = items.slice(i, i + 1000).map((t) => [id, t.serverId, t.dbName, t.orgId, t.wave]);
          await db.query('INSERT INTO schema_rollout_tenants (rollout_id, db_server_id, db_name, org_id, wave) VALUES ?', {
            replacements: [chunk],
            transaction,
          });
        }
        return Number(id);
      });
    },
    async get(id: number): Promise<Rollout | undefined> {
      const [r] = await select<RolloutRow>('SELECT * FROM schema_rollouts WHERE id = ?', [id]);
      return r && toRollout(r);
    },
    async latest(): Promise<Rollout | undefined> {
      const [r] = await select<RolloutRow>('SELECT * FROM schema_rollouts ORDER BY id DESC LIMIT 1', []);
      return r && toRollout(r);
    },
    /** Sets the state when it is one of `from`; answers whether it changed. `done` also stamps finished_at. */
    async setState(id: number, to: RolloutState, from: readonly RolloutState[], note?: string | null): Promise<boolean> {
      const [, meta] = await db.query(
        `UPDATE schema_rollouts SET state = :to, updated_at = CURRENT_TIMESTAMP(3),
           finished_at = IF(:to = 'done', CURRENT_TIMESTAMP(3), NULL)${note === undefined ? '' : ', note = :note'}
         WHERE id = :id AND state IN (:from) AND superseded_by IS NULL`,
        { replacements: { id, to, from, note: note ?? null } },
      );
      return affected(meta) === 1;
    },
    /** Marks every unfinished rollout but `by` as superseded by it (a new migrate covers what they left). */
    async supersedeUnfinished(by: number): Promise<number[]> {
      const ids = (
        await select<{ id: number }>("SELECT id FROM schema_rollouts WHERE state <> 'done' AND superseded_by IS NULL AND id <> ?", [by])
      ).map((r) => r.id);
      if (ids.length)
        await db.query(
          'UPDATE schema_rollouts SET superseded_by = :by, note = :note, updated_at = CURRENT_TIMESTAMP(3) WHERE id IN (:ids)',
          {
            replacements: { by, ids, note: `superseded by rollout ${by}` },
          },
        );
      return ids;
    },
    async counts(id: number): Promise<RolloutCounts> {
      const counts: RolloutCounts = { pending: 0, running: 0, done: 0, failed: 0 };
      for (const r of await select<{ state: ItemState; n: number }>(
        'SELECT state, COUNT(*) AS n FROM schema_rollout_tenants WHERE rollout_id = ? GROUP BY state',
        [id],
      ))
        counts[r.state] = Number(r.n);
      return counts;
    },
    /** Finished tenants' first start, last finish and count: the rate of the rollout. */
    async pace(id: number): Promise<{ finished: number; first: Date | null; last: Date | null }> {
      const [r] = await select<{ n: number; first: Date | null; last: Date | null }>(
        `SELECT COUNT(*) AS n, MIN(started_at) AS first, MAX(finished_at) AS last FROM schema_rollout_tenants
         WHERE rollout_id = ? AND state IN ('done', 'failed') AND finished_at IS NOT NULL`,
        [id],
      );
      return { finished: Number(r?.n ?? 0), first: r?.first ?? null, last: r?.last ?? null };
    },
    async failures(id: number, limit = 100): Promise<RolloutItem[]> {
      return (
        await select<Record<string, unknown>>(`${ITEM_SELECT} WHERE i.rollout_id = ? AND i.state = 'failed' ORDER BY i.id LIMIT ?`, [
          id,
          limit,
        ])
      ).map(toItem);
    },
    async items(id: number): Promise<RolloutItem[]> {
      return (await select<Record<string, unknown>>(`${ITEM_SELECT} WHERE i.rollout_id = ? ORDER BY i.id`, [id])).map(toItem);
    },
    /** The lowest wave with pending tenants, and the servers they are on. */
    async nextWave(id: number): Promise<{ wave: number; servers: number[] } | undefined> {
      const rows = await select<{ wave: number; server: number }>(
        `SELECT wave, db_server_id AS server FROM schema_rollout_tenants
         WHERE rollout_id = ? AND state = 'pending' AND wave = (SELECT MIN(wave) FROM schema_rollout_tenants WHERE rollout_id = ? AND state = 'pending')
         GROUP BY wave, db_server_id`,
        [id, id],
      );
      return rows.length ? { wave: Number(rows[0]!.wave), servers: rows.map((r) => Number(r.server)) } : undefined;
    },
    /**
     * Up to `limit` pending tenants of one wave and server after item `afterId`, in order. Nothing is written: the one
     * runner (it holds the rollout lock) marks them running when it starts them (markStarted).
     */
    async pending(id: number, wave: number, serverId: number, afterId: number, limit: number): Promise<RolloutItem[]> {
      return (
        await select<Record<string, unknown>>(
          `${ITEM_SELECT} WHERE i.rollout_id = ? AND i.wave = ? AND i.db_server_id = ? AND i.state = 'pending' AND i.id > ? ORDER BY i.id LIMIT ?`,
          [id, wave, serverId, afterId, limit],
        )
      ).map(toItem);
    },
    /** Marks tenants the runner started as running (before their results, in the same transaction). */
    async markStarted(itemIds: readonly number[], transaction?: Transaction): Promise<void> {
      if (itemIds.length)
        await db.query(
          "UPDATE schema_rollout_tenants SET state = 'running', started_at = CURRENT_TIMESTAMP(3), error = NULL WHERE id IN (?) AND state = 'pending'",
          { replacements: [itemIds], transaction },
        );
    },
    /** Records finished tenants (one statement). */
    async finish(items: readonly FinishedItem[], transaction?: Transaction): Promise<void> {
      if (!items.length) return;
      await db.query(
        `INSERT INTO schema_rollout_tenants (id, rollout_id, db_server_id, db_name, org_id, wave, state, result, migrations, error, ms, finished_at) VALUES ?
         ON DUPLICATE KEY UPDATE state = VALUES(state), result = VALUES(result), migrations = VALUES(migrations), error = VALUES(error),
           ms = VALUES(ms), finished_at = VALUES(finished_at)`,
        {
          replacements: [
            items.map((i) => [
              i.item.id,
              i.rolloutId,
              i.item.serverId,
              i.item.dbName,
              i.item.orgId,
              i.item.wave,
              i.state,
              i.result,
              JSON.stringify(i.migrations).slice(0, 4000),
              i.error?.slice(0, 8000) ?? null,
              i.ms,
              new Date(),
            ]),
          ],
          transaction,
        },
      );
    },
    /** Puts tenants back to pending (claimed but never started, or left running by a runner that died). */
    async requeue(id: number, itemIds?: readonly number[]): Promise<number> {
      const [, meta] = await db.query(
        `UPDATE schema_rollout_tenants SET state = 'pending', started_at = NULL WHERE rollout_id = :id AND state = 'running'${itemIds ? ' AND id IN (:itemIds)' : ''}`,
        { replacements: { id, itemIds: itemIds?.length ? itemIds : [0] } },
      );
      return affected(meta);
    },
    /** Failed tenants back to pending (retry). */
    async resetFailed(id: number): Promise<number> {
      const [, meta] = await db.query(
        "UPDATE schema_rollout_tenants SET state = 'pending', started_at = NULL, finished_at = NULL WHERE rollout_id = ? AND state = 'failed'",
        { replacements: [id] },
      );
      return affected(meta);
    },
    /**
     * Adds, as wave `wave`, every operational tenant not in the rollout whose recorded version is not `target` (made or
     * moved meanwhile by code that did not migrate it to the target); answers how many.
     */
    async addStragglers(id: number, wave: number, target: string): Promise<number> {
      const [, meta] = await db.query(
        `INSERT INTO schema_rollout_tenants (rollout_id, db_server_id, db_name, org_id, wave)
         SELECT :id, o.db_server_id, o.db_name, o.id, :wave FROM orgs o
           LEFT JOIN tenant_schema_versions v ON v.db_server_id = o.db_server_id AND v.db_name = o.db_name
         WHERE o.status IN (${MIGRATABLE_STATUSES.map((s) => `'${s}'`).join(', ')}) AND o.db_server_id IS NOT NULL AND o.db_name IS NOT NULL
           AND (v.version IS NULL OR v.version <> :target OR v.last_error IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM schema_rollout_tenants i WHERE i.rollout_id = :id AND i.db_server_id = o.db_server_id AND i.db_name = o.db_name)`,
        { replacements: { id, wave, target } },
      );
      return affected(meta);
    },
    /** Where an org's database is now, and its status (null: no such org). */
    async orgOf(orgId: number): Promise<RolloutItem['org']> {
      const [r] = await select<{ db_server_id: number | null; db_name: string | null; status: string }>(
        'SELECT db_server_id, db_name, status FROM orgs WHERE id = ?',
        [orgId],
      );
      return r ? { serverId: r.db_server_id === null ? null : Number(r.db_server_id), dbName: r.db_name, status: r.status } : null;
    },
    async maxWave(id: number): Promise<number> {
      const [r] = await select<{ w: number | null }>('SELECT MAX(wave) AS w FROM schema_rollout_tenants WHERE rollout_id = ?', [id]);
      return Number(r?.w ?? 0);
    },
  };
}

export type RolloutRepository = ReturnType<typeof createRolloutRepository>;
