/**
 * Each tenant database's schema version, recorded in the shared DB as part of its migration (after the tenant's own
 * schema_migrations table changed: the record may lag behind a tenant, never run ahead of it). Fleet status and a
 * no-op migrate read it instead of opening a connection per tenant.
 */
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { MIGRATABLE_STATUSES } from '../domain/org.js';

/** A tenant database on a server: the unit of a rollout (the org id is absent for a database no org owns yet). */
export interface TenantDbRef {
  serverId: number;
  dbName: string;
  orgId: number | null;
}

export interface VersionEntry extends TenantDbRef {
  /** The last migration applied; for a failed attempt, what is known of it (null: unknown, the record keeps its own). */
  version: string | null;
  /** The attempt's error; absent when it succeeded. */
  error?: string;
  /** The error was a connection error: the database could not be reached. */
  unreachable?: boolean;
}

export interface FleetSummary {
  latest: string | null;
  /** Tenants per last applied migration (recorded). */
  versions: Record<string, number>;
  /** Tenants not (known to be) at the latest migration: behind, failed, unreachable, or never recorded. */
  pending: number;
  tenants: number;
  /** Tenants whose last migration attempt failed (unreachable ones included). */
  failed: number;
  unreachable: number;
  /** Tenants with no recorded version (never migrated since the record exists: the next migrate records them). */
  unrecorded: number;
}

export { MIGRATABLE_STATUSES };

const OPERATIONAL = `o.status IN (${MIGRATABLE_STATUSES.map((s) => `'${s}'`).join(', ')}) AND o.db_server_id IS NOT NULL AND o.db_name IS NOT NULL`;
const JOIN = 'LEFT JOIN tenant_schema_versions v ON v.db_server_id = o.db_server_id AND v.db_name = o.db_name';

/** Creates the version record over the shared DB. */
export function createSchemaVersions(sharedDb: Sequelize) {
  return {
    /** Upserts many entries in two statements: successes set the version, failures only their error. */
    async record(entries: readonly VersionEntry[], transaction?: Transaction): Promise<void> {
      const ok = entries.filter((e) => e.error === undefined);
      const failed = entries.filter((e) => e.error !== undefined);
      if (ok.length)
        await sharedDb.query(
          `INSERT INTO tenant_schema_versions (db_server_id, db_name, org_id, version, last_error, unreachable) VALUES ?
           ON DUPLICATE KEY UPDATE org_id = VALUES(org_id), version = VALUES(version), last_error = NULL, unreachable = 0,
             updated_at = CURRENT_TIMESTAMP(3)`,
          { replacements: [ok.map((e) => [e.serverId, e.dbName, e.orgId, e.version, null, 0])], transaction },
        );
      if (failed.length)
        await sharedDb.query(
          `INSERT INTO tenant_schema_versions (db_server_id, db_name, org_id, version, last_error, unreachable) VALUES ?
           ON DUPLICATE KEY UPDATE org_id = VALUES(org_id), version = COALESCE(VALUES(version), version),
             last_error = VALUES(last_error), unreachable = VALUES(unreachable), updated_at = CURRENT_TIMESTAMP(3)`,
          {
            replacements: [failed.map((e) => [e.serverId, e.dbName, e.orgId, e.version, e.error!.slice(0, 4000), e.unreachable ? 1 : 0])],
            transaction,
          },
        );
    },
    /** Forgets a database (dropped, or the old copy of a moved tenant). */
    async remove(serverId: number, dbName: string): Promise<void> {
      await sharedDb.query('DELETE FROM tenant_schema_versions WHERE db_server_id = ? AND db_name = ?', {
        replacements: [serverId, dbName],
      });
    },
    /** The fleet summary, from the shared DB alone (one query). */
    async fleet(latest: string | null): Promise<FleetSummary> {
      const rows = await sharedDb.query<{ version: string | null; recorded: number; failed: number; unreachable: number; n: number }>(
        `SELECT v.version, v.db_name IS NOT NULL AS recorded, v.last_error IS NOT NULL AS failed, COALESCE(v.unreachable, 0) AS unreachable,
           COUNT(*) AS n
         FROM orgs o ${JOIN} WHERE ${OPERATIONAL} GROUP BY 1, 2, 3, 4`,
        { type: QueryTypes.SELECT },
      );
      const s: FleetSummary = { latest, versions: {}, pending: 0, tenants: 0, failed: 0, unreachable: 0, unrecorded: 0 };
      for (const r of rows) {
        const n = Number(r.n);
        s.tenants += n;
        if (!Number(r.recorded)) s.unrecorded += n;
        else if (r.version !== null) s.versions[r.version] = (s.versions[r.version] ?? 0) + n;
        if (Number(r.failed)) s.failed += n;
        if (Number(r.unreachable)) s.unreachable += n;
        if (!Number(r.recorded) || r.version !== latest || Number(r.failed)) s.pending += n;
      }
      return s;
    },
    /** Operational tenants in org-id order with their recorded version (undefined: none recorded); optionally only `ids`. */
    async tenants(
      ids?: readonly number[],
    ): Promise<(TenantDbRef & { orgId: number; version: string | null | undefined; failed: boolean })[]> {
      const rows = await sharedDb.query<{
        id: number;
        db_server_id: number;
        db_name: string;
        version: string | null;
        recorded: number;
        failed: number;
      }>(
        `SELECT o.id, o.db_server_id, o.db_name, v.version, v.db_name IS NOT NULL AS recorded, v.last_error IS NOT NULL AS failed
         FROM orgs o ${JOIN} WHERE ${OPERATIONAL}${ids ? ' AND o.id IN (:ids)' : ''} ORDER BY o.id`,
        { replacements: { ids: ids?.length ? ids : [0] }, type: QueryTypes.SELECT },
      );
      return rows.map((r) => ({
        orgId: Number(r.id),
        serverId: Number(r.db_server_id),
        dbName: r.db_name,
        version: Number(r.recorded) ? r.version : undefined,
        failed: Boolean(Number(r.failed)),
      }));
    },
  };
}

export type SchemaVersions = ReturnType<typeof createSchemaVersions>;
