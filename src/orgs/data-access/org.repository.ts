/** Data access for orgs and API keys in the shared DB. Plain objects in, plain objects out. */
import { randomUUID } from 'node:crypto';
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { selectRows, write } from '../../platform/db/lean-query.js';
import { batchedLoader } from '../../platform/lib/batch.js';
import type { ApiKeyRecord, OrgRecord, OrgStatus } from '../domain/org.js';

type Row = Record<string, unknown>;

/** The name of a warm-pool tenant's org until it is claimed (org names given by people cannot start with a NUL). */
export const POOLED_NAME_PREFIX = '\u0000pooled:';

const affectedRows = (meta: unknown): number => Number((meta as { affectedRows?: number }).affectedRows ?? 0);

const toOrg = (r: Row): OrgRecord => ({
  id: Number(r.id),
  name: String(r.name),
  uid: String(r.uid),
  status: r.status as OrgStatus,
  creditBalance: Number(r.credit_balance),
  dbServerId: r.db_server_id == null ? null : Number(r.db_server_id),
  dbName: (r.db_name as string | null) ?? null,
  dbUser: (r.db_user as string | null) ?? null,
  dbPasswordEnc: (r.db_password_enc as string | null) ?? null,
  provisioningStep: (r.provisioning_step as string | null) ?? null,
  lastError: (r.last_error as string | null) ?? null,
  rateLimit: r.rate_limit_points == null ? null : { points: Number(r.rate_limit_points), duration: Number(r.rate_limit_duration) },
  deliveryConcurrency: r.delivery_concurrency == null ? null : Number(r.delivery_concurrency),
  webhookUrl: (r.webhook_url as string | null) ?? null,
  webhookSecretEnc: (r.webhook_secret_enc as string | null) ?? null,
  movingSince: r.moving_since ? new Date(r.moving_since as Date) : null,
  movingToServerId: r.moving_to_server_id == null ? null : Number(r.moving_to_server_id),
  pooledSince: r.pooled_since ? new Date(r.pooled_since as Date) : null,
  droppedAt: r.dropped_at ? new Date(r.dropped_at as Date) : null,
  purgedAt: r.purged_at ? new Date(r.purged_at as Date) : null,
  createdAt: new Date(r.created_at as Date),
  updatedAt: new Date(r.updated_at as Date),
});

const toKey = (r: Row): ApiKeyRecord => ({
  id: Number(r.id),
  orgId: Number(r.org_id),
  prefix: String(r.prefix),
  keyHash: String(r.key_hash),
  name: String(r.name),
  createdAt: new Date(r.created_at as Date),
  lastUsedAt: r.last_used_at ? new Date(r.last_used_at as Date) : null,
  revokedAt: r.revoked_at ? new Date(r.revoked_at as Date) : null,
});

/** Columns an update may touch, mapped to their SQL names. */
const UPDATABLE = {
  status: 'status',
  dbServerId: 'db_server_id',
  dbName: 'db_name',
  dbUser: 'db_user',
  dbPasswordEnc: 'db_password_enc',
  provisioningStep: 'provisioning_step',
  lastError: 'last_error',
  webhookUrl: 'webhook_url',
  webhookSecretEnc: 'webhook_secret_enc',
  rateLimitPoints: 'rate_limit_points',
  rateLimitDuration: 'rate_limit_duration',
  deliveryConcurrency: 'delivery_concurrency',
} as const;
export type OrgUpdate = Partial<Record<keyof typeof UPDATABLE, string | number | null>>;

/** Creates the org and API-key repository over the shared DB. */
export function createOrgRepository(db: Sequelize) {
  const select = async (sql: string, replacements: Row, transaction?: Transaction) =>
    db.query<Row>(sql, { replacements, type: QueryTypes.SELECT, transaction });

  return {
    /** The shared DB, for callers that need a transaction across repository calls. */
    sequelize: db,
    async insert(input: { name: string; dbServerId: number }, transaction?: Transaction): Promise<number> {
      const [id] = await db.query(
        `INSERT INTO orgs (name, uid, status, credit_balance, db_server_id, provisioning_step) VALUES (:name, :uid, 'PROVISIONING', 0, :dbServerId, 'CREATE_DATABASE')`,
        { replacements: { ...input, uid: randomUUID() }, type: QueryTypes.INSERT, transaction },
      );
      return Number(id);
    },
    /** A warm-pool tenant's org row (POOLED once provisioned), named by its uid until a create claims it. */
    async insertPooled(dbServerId: number, transaction?: Transaction): Promise<number> {
      const uid = randomUUID();
      const [id] = await db.query(
        `INSERT INTO orgs (name, uid, status, credit_balance, db_server_id, provisioning_step, pooled_since)
         VALUES (:name, :uid, 'PROVISIONING', 0, :dbServerId, 'CREATE_DATABASE', CURRENT_TIMESTAMP(3))`,
        { replacements: { name: `${POOLED_NAME_PREFIX}${uid}`, uid, dbServerId }, type: QueryTypes.INSERT, transaction },
      );
      return Number(id);
    },
    /**
     * Locks one ready warm-pool tenant on one of `serverIds` (oldest first) for the caller's transaction, skipping those
     * other transactions hold: two creates never get the same one. Undefined: none ready.
     */
    async lockPooled(serverIds: readonly number[], transaction: Transaction): Promise<number | undefined> {
      if (!serverIds.length) return undefined;
      const [r] = await select(
        `SELECT id FROM orgs WHERE status = 'POOLED' AND db_server_id IN (:serverIds) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`,
        { serverIds },
        transaction,
      );
      return r ? Number(r.id) : undefined;
    },
    /** Makes a locked warm-pool tenant the org `name`: ACTIVE, created now. False if it was no longer POOLED. */
    async claimPooled(id: number, name: string, transaction: Transaction): Promise<boolean> {
      const [, meta] = await db.query(
        `UPDATE orgs SET name = :name, status = 'ACTIVE', pooled_since = NULL, created_at = CURRENT_TIMESTAMP(3),
           updated_at = CURRENT_TIMESTAMP(3) WHERE id = :id AND status = 'POOLED'`,
        { replacements: { id, name }, transaction },
      );
      return affectedRows(meta) === 1;
    },
    /** Deletes a warm-pool tenant's row (never claimed: it has no key, no ledger entry and no message). */
    async deletePooled(id: number): Promise<void> {
      await db.query("DELETE FROM orgs WHERE id = :id AND pooled_since IS NOT NULL AND status <> 'ACTIVE'", { replacements: { id } });
    },
    /** Warm-pool tenants per server: ready (POOLED) and still being provisioned or failed (with the oldest's age). */
    async pooledCounts(): Promise<Map<number, { ready: number; making: number; failed: number }>> {
      const rows = await select(
        `SELECT db_server_id AS server, SUM(status = 'POOLED') AS ready, SUM(status = 'PROVISIONING') AS making,
           SUM(status = 'FAILED') AS failed
         FROM orgs WHERE pooled_since IS NOT NULL AND status IN ('POOLED', 'PROVISIONING', 'FAILED') GROUP BY db_server_id`,
        {},
      );
      return new Map(rows.map((r) => [Number(r.server), { ready: Number(r.ready), making: Number(r.making), failed: Number(r.failed) }]));
    },
    /** Warm-pool tenants whose provisioning stopped (failed, or untouched for `staleSec`: its process died). */
    async stalledPooled(staleSec: number): Promise<{ id: number; status: OrgStatus }[]> {
      const rows = await select(
        `SELECT id, status FROM orgs WHERE pooled_since IS NOT NULL AND (status = 'FAILED'
           OR (status = 'PROVISIONING' AND updated_at < CURRENT_TIMESTAMP(3) - INTERVAL :staleSec SECOND)) ORDER BY id LIMIT 100`,
        { staleSec },
      );
      return rows.map((r) => ({ id: Number(r.id), status: r.status as OrgStatus }));
    },
    async get(id: number, transaction?: Transaction): Promise<OrgRecord | undefined> {
      // Outside a transaction (the org cache's loads, on a request's path): the lean path.
      const [r] = transaction
        ? await select('SELECT * FROM orgs WHERE id = :id', { id }, transaction)
        : await selectRows<Row>(db, 'SELECT * FROM orgs WHERE id = ?', [id]);
      return r && toOrg(r);
    },
    /** The current balance, read fresh (not from any cache). */
    async balance(id: number): Promise<number> {
      // On every POST /messages: the lean path (no Sequelize query layer).
      const [r] = await selectRows<{ credit_balance: number }>(db, 'SELECT credit_balance FROM orgs WHERE id = ?', [id]);
      return Number(r?.credit_balance ?? 0);
    },
    /** Orgs by ascending id after a cursor, optionally of some statuses. */
    async list(opts: { limit: number; after?: number; statuses?: readonly OrgStatus[] }): Promise<OrgRecord[]> {
      const where = ['id > :after'];
      // Warm-pool tenants are no one's org yet: listed only when asked for by status (fleet migrations).
      where.push(opts.statuses?.length ? 'status IN (:statuses)' : "status <> 'POOLED'");
      const rows = await select(`SELECT * FROM orgs WHERE ${where.join(' AND ')} ORDER BY id LIMIT :limit`, {
        after: opts.after ?? 0,
        statuses: opts.statuses ?? [],
        limit: opts.limit,
      });
      return rows.map(toOrg);
    },
    async update(id: number, fields: OrgUpdate, transaction?: Transaction): Promise<void> {
      const entries = Object.entries(fields).filter(([k]) => k in UPDATABLE) as [keyof typeof UPDATABLE, unknown][];
      if (entries.length === 0) return;
      const sets = entries.map(([k]) => `${UPDATABLE[k]} = :${k}`).join(', ');
      await db.query(`UPDATE orgs SET ${sets}, updated_at = CURRENT_TIMESTAMP(3) WHERE id = :id`, {
        replacements: { ...Object.fromEntries(entries), id },
        transaction,
      });
    },
    async insertKey(input: { orgId: number; prefix: string; keyHash: string; name: string }, transaction?: Transaction): Promise<void> {
      await db.query('INSERT INTO api_keys (org_id, prefix, key_hash, name) VALUES (:orgId, :prefix, :keyHash, :name)', {
        replacements: input,
        transaction,
      });
    },
    async findKey(prefix: string): Promise<ApiKeyRecord | undefined> {
      // The key cache's loads, on a request's path: the lean path.
      const [r] = await selectRows<Row>(db, 'SELECT * FROM api_keys WHERE prefix = ?', [prefix]);
      return r && toKey(r);
    },
    /**
     * The key of this prefix with its org, in one read (a first request of a tenant the org cache has not seen lately).
     * Such reads asked for within one batch of ready sockets are one statement (a large fleet's long tail).
     */
    findKeyWithOrg: batchedLoader(async (prefixes: string[]): Promise<({ key: ApiKeyRecord; org: OrgRecord } | undefined)[]> => {
      const rows = await selectRows<{ k: Row; o: Row }>(
        db,
        `SELECT k.*, o.* FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.prefix IN (${prefixes.map(() => '?').join(', ')})`,
        prefixes,
        { nestTables: true },
      );
      const found = new Map(rows.map((r) => [String(r.k.prefix), { key: toKey(r.k), org: toOrg(r.o) }]));
      return prefixes.map((prefix) => found.get(prefix));
    }),
    async listKeys(orgId: number): Promise<ApiKeyRecord[]> {
      return (await select('SELECT * FROM api_keys WHERE org_id = :orgId ORDER BY id', { orgId })).map(toKey);
    },
    async countActiveKeys(orgId: number, transaction?: Transaction): Promise<number> {
      const [r] = await select('SELECT COUNT(*) AS n FROM api_keys WHERE org_id = :orgId AND revoked_at IS NULL', { orgId }, transaction);
      return Number(r?.n ?? 0);
    },
    /** Revokes a key of the org; false when no such unrevoked key. */
    async revokeKey(orgId: number, prefix: string): Promise<boolean> {
      const [, meta] = await db.query(
        'UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP(3) WHERE org_id = :orgId AND prefix = :prefix AND revoked_at IS NULL',
        { replacements: { orgId, prefix } },
      );
      return (meta as { affectedRows?: number }).affectedRows === 1;
    },
    /**
     * Records a key's use now. The uses recorded while the process handles one batch of ready sockets go in one
     * statement (each key is recorded at most every 15 minutes per process: org-registry.ts).
     */
    touchKey: batchedLoader(async (ids: number[]): Promise<void[]> => {
      await write(db, `UPDATE api_keys SET last_used_at = CURRENT_TIMESTAMP(3) WHERE id IN (${ids.map(() => '?').join(', ')})`, ids);
      return ids.map(() => undefined);
    }),
  };
}

export type OrgRepository = ReturnType<typeof createOrgRepository>;
