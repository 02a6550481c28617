/**
 * Moves a tenant's database to another MySQL server: refuse the tenant (503 TENANT_MOVING), fence the old copy (its
 * MySQL account locked, its sessions killed, so nothing can write there any more), make the database, user and schema
 * on the new server, copy every table in primary-key batches, verify the row counts, switch the org to the new
 * server, then drop the old copy. A failure before the switch drops what was made on the new server, unlocks the old
 * account and lets the tenant in again, where it was: it keeps working on its old server.
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import { MIGRATIONS_TABLE } from '../../platform/db/migrator.js';
import { conflict, describeError, notFound } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { OrgEvents } from './org-events.js';
import { isOperational, type ProvisionedOrg } from './org.js';
import type { OrgRepository } from '../data-access/org.repository.js';
import { AS_STORED, selectRows, write } from '../../platform/db/lean-query.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';
import { OWNER_TABLE, accountOf, type Provisioner } from './provisioner.js';
import type { DbServer, ServerRegistry } from './server-registry.js';

export const MOVE_STEPS = ['FENCE', 'PLACE_COPY', 'COPY', 'VERIFY', 'SWITCH'] as const;
export type MoveStep = (typeof MOVE_STEPS)[number];

export interface MoveResult {
  orgId: number;
  from: string;
  to: string;
  /** Rows copied, per table. */
  rows: Record<string, number>;
  /** False when the old copy could not be dropped after the switch (the log says why; drop it by hand). */
  oldCopyDropped: boolean;
}

export interface TenantMoverDeps {
  repo: OrgRepository;
  servers: ServerRegistry;
  provisioner: Pick<Provisioner, 'placeCopy' | 'removeDatabase'>;
  events: Pick<OrgEvents, 'publish'>;
  userHost: string;
  logger: Logger;
  /** Rows per INSERT while copying. */
  batchSize?: number;
  /** Test seam: called before each step; may throw to fail the move there. */
  beforeStep?: (step: MoveStep, orgId: number) => void | Promise<void>;
}

type Row = Record<string, unknown>;

export function createTenantMover(deps: TenantMoverDeps) {
  const { repo, servers, provisioner, events, logger } = deps;
  const batch = deps.batchSize ?? 1000;
  const db = repo.sequelize;

  async function setAccountLock(org: ProvisionedOrg, serverId: number, locked: boolean): Promise<void> {
    const admin = await servers.admin(serverId);
    await admin.query(`ALTER USER ${accountOf(admin, org.dbUser, deps.userHost)} ACCOUNT ${locked ? 'LOCK' : 'UNLOCK'}`);
  }

  /** No new session can log in as the tenant on the old server, and the open ones (ours or other processes') end. */
  async function fence(org: ProvisionedOrg): Promise<void> {
    await setAccountLock(org, org.dbServerId, true);
    const admin = await servers.admin(org.dbServerId);
    const sessions = await admin.query<{ id: number }>('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = :user', {
      replacements: { user: org.dbUser },
      type: QueryTypes.SELECT,
    });
    for (const s of sessions) await admin.query(`KILL CONNECTION ${Number(s.id)}`).catch(() => undefined); // gone meanwhile
  }

  const tablesOf = async (conn: Sequelize, dbName: string) =>
    (
      await conn.query<{ name: string }>(
        "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        { replacements: { db: dbName }, type: QueryTypes.SELECT },
      )
    )
      .map((t) => t.name)
      .filter((t) => t !== OWNER_TABLE && t !== MIGRATIONS_TABLE); // both are made by placeCopy on the new server

  /** Copies every data table in primary-key order, `batch` rows per INSERT; answers the rows copied per table. */
  async function copy(from: Sequelize, to: Sequelize, dbName: string): Promise<Record<string, number>> {
    const copied: Record<string, number> = {};
    for (const table of await tablesOf(from, dbName)) {
      const t = quoteIdentifier(table);
      let after = 0;
      copied[table] = 0;
      for (;;) {
        const rows = await selectRows<Row>(from, `SELECT * FROM ${t} WHERE id > ? ORDER BY id LIMIT ?`, [after, batch], AS_STORED);
        if (rows.length === 0) break;
        const columns = Object.keys(rows[0]!);
        await write(to, `INSERT INTO ${t} (${columns.map(quoteIdentifier).join(', ')}) VALUES ?`, [
          rows.map((r) => columns.map((c) => r[c])),
        ]);
        copied[table] += rows.length;
        after = Number(rows.at(-1)!.id);
      }
    }
    return copied;
  }

  /** Row counts and highest ids must match table by table. */
  async function verify(from: Sequelize, to: Sequelize, dbName: string): Promise<void> {
    for (const table of await tablesOf(from, dbName)) {
      const sql = `SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS top FROM ${quoteIdentifier(table)}`;
      const [a] = await from.query<{ n: number; top: number }>(sql, { type: QueryTypes.SELECT });
      const [b] = await to.query<{ n: number; top: number }>(sql, { type: QueryTypes.SELECT });
      if (Number(a?.n) !== Number(b?.n) || Number(a?.top) !== Number(b?.top))
        throw new Error(`verification failed on ${table}: ${a?.n} rows (max id ${a?.top}) → ${b?.n} rows (max id ${b?.top})`);
    }
  }

  /** Undoes a move that did not switch: the copy on `to` dropped, the old account unlocked, the tenant let in. */
  async function rollBack(org: ProvisionedOrg, to: number): Promise<void> {
    await provisioner
      .removeDatabase(org, to)
      .catch((err) => logger.warn('move: the new copy could not be dropped', { orgId: org.id, err: describeError(err) }));
    await setAccountLock(org, org.dbServerId, false);
    await db.query('UPDATE orgs SET moving_since = NULL, moving_to_server_id = NULL WHERE id = :id AND db_server_id = :from', {
      replacements: { id: org.id, from: org.dbServerId },
    });
    await events.publish({ orgId: org.id, reason: 'move-aborted' });
  }

  async function step<T>(name: MoveStep, orgId: number, fn: () => Promise<T>): Promise<T> {
    await deps.beforeStep?.(name, orgId);
    const result = await fn();
    logger.info('tenant move step done', { orgId, step: name });
    return result;
  }

  return {
    /** Moves the org's database to the server named `to`. */
    async move(orgId: number, to: string): Promise<MoveResult> {
      const org = await repo.get(orgId);
      if (!org || org.status === 'DELETED') throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
      if (!isOperational(org)) throw conflict('ORG_NOT_READY', `org ${orgId} is ${org.status}; only a provisioned org can move`);
      const target: DbServer = await servers.pickForNewTenant(to); // active, with room
      const source = await servers.get(org.dbServerId);
      if (target.id === org.dbServerId) throw conflict('ALREADY_THERE', `org ${orgId} is already on ${to}`);
      // Taking the move: only one at a time per org.
      const [, meta] = await db.query(
        `UPDATE orgs SET moving_since = CURRENT_TIMESTAMP(3), moving_to_server_id = :to
         WHERE id = :id AND db_server_id = :from AND moving_since IS NULL AND status IN ('ACTIVE', 'SUSPENDED')`,
        { replacements: { id: orgId, to: target.id, from: org.dbServerId } },
      );
      if ((meta as { affectedRows?: number }).affectedRows !== 1)
        throw conflict('MOVE_IN_PROGRESS', `org ${orgId} is being moved already (or changed meanwhile); see bin/tenant move --abort`);
      await events.publish({ orgId, reason: 'moving' });

      let rows: Record<string, number>;
      const from = await servers.adminForDatabase(org.dbServerId, org.dbName);
      let there: Sequelize | undefined;
      try {
        await step('FENCE', orgId, () => fence(org));
        await step('PLACE_COPY', orgId, () => provisioner.placeCopy(org, target.id));
        there = await servers.adminForDatabase(target.id, org.dbName);
        rows = await step('COPY', orgId, () => copy(from, there!, org.dbName));
        await step('VERIFY', orgId, () => verify(from, there!, org.dbName));
        await step('SWITCH', orgId, async () => {
          const [, m] = await db.query(
            `UPDATE orgs SET db_server_id = :to, moving_since = NULL, moving_to_server_id = NULL
             WHERE id = :id AND db_server_id = :from AND moving_to_server_id = :to`,
            { replacements: { id: orgId, to: target.id, from: org.dbServerId } },
          );
          if ((m as { affectedRows?: number }).affectedRows !== 1) throw new Error('the org changed during the move');
        });
      } catch (err) {
        logger.error('tenant move failed; the tenant stays on its old server', { orgId, to, err: describeError(err) });
        await rollBack(org, target.id);
        throw err;
      } finally {
        await Promise.allSettled([from.close(), there?.close()]);
      }
      await events.publish({ orgId, reason: 'moved' });
      const oldCopyDropped = await provisioner.removeDatabase(org, org.dbServerId).then(
        () => true,
        (err) => {
          logger.warn('move: switched, but the old copy could not be dropped; drop it by hand', { orgId, err: describeError(err) });
          return false;
        },
      );
      return { orgId, from: source.name, to: target.name, rows, oldCopyDropped };
    },

    /** Ends a move that a crash left half-done: the org stays on its old server, the new copy is dropped. */
    async abort(orgId: number): Promise<void> {
      const org = await repo.get(orgId);
      if (!org || !isOperational(org) || org.movingSince === null || org.movingToServerId === null)
        throw conflict('NO_MOVE_IN_PROGRESS', `org ${orgId} is not being moved`);
      await rollBack(org, org.movingToServerId);
    },
  };
}

export type TenantMover = ReturnType<typeof createTenantMover>;
