/**
 * Drift: every tenant's real schema compared with a reference database migrated to the same version on the same
 * server (built, read and dropped here), with one information_schema read per server, not a connection per tenant.
 */
import { createHash } from 'node:crypto';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { describeError } from '../../platform/lib/errors.js';
import type { MigrationSet } from '../../platform/db/migration-set.js';
import { sessionMigrator } from '../../platform/db/migration-set.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';
import {
  commonPrefix,
  diffShapes,
  likePrefix,
  listTables,
  readApplied,
  readShape,
  readShapes,
  withMigrationsTable,
  type SchemaShape,
} from './schema-shapes.js';
import type { SchemaVersions, TenantDbRef } from '../data-access/schema-versions.js';
import type { ServerRegistry } from './server-registry.js';

export interface DriftReport {
  checked: number;
  drifted: { orgId: number | null; serverId: number; dbName: string; differences: string[] }[];
  /** Each server's table caches against the tables its tenant databases hold (advice only: not drift). */
  servers: ServerTables[];
}

/** What a server keeps open against what its tenants have; `advice` says what to change when it is too small. */
export interface ServerTables {
  serverId: number;
  tables: number;
  tableOpenCache: number;
  tableDefinitionCache: number;
  advice: string[];
}

/**
 * Advice on a server's table caches: below the number of tenant tables, a request of a tenant not touched lately
 * opens its tables again (docs/operations.md, a tenant server for thousands of tenants).
 */
export function tableCacheAdvice(t: Pick<ServerTables, 'tables' | 'tableOpenCache' | 'tableDefinitionCache'>): string[] {
  const advice: string[] = [];
  for (const [name, value] of [
    ['table_open_cache', t.tableOpenCache],
    ['table_definition_cache', t.tableDefinitionCache],
  ] as const)
    if (value < t.tables)
      advice.push(
        `${name} is ${value}, below the ${t.tables} tables of its tenant databases: tenants not used lately reopen their tables on every request; set it to at least ${t.tables}`,
      );
  return advice;
}

/** A server's table caches against `tables`, the number of tables of its tenant databases. */
async function readServerTables(admin: Sequelize, serverId: number, tables: number): Promise<ServerTables> {
  const [row] = await admin.query<{ open: number; definitions: number }>(
    'SELECT @@table_open_cache AS open, @@table_definition_cache AS definitions',
    { type: QueryTypes.SELECT },
  );
  const t = { tables, tableOpenCache: Number(row?.open ?? 0), tableDefinitionCache: Number(row?.definitions ?? 0) };
  return { serverId, ...t, advice: tableCacheAdvice(t) };
}

/** Items by their server id, in their order. */
export function groupByServer<T extends { serverId: number }>(items: readonly T[]): Map<number, T[]> {
  const out = new Map<number, T[]>();
  for (const item of items) {
    const list = out.get(item.serverId);
    if (list) list.push(item);
    else out.set(item.serverId, [item]);
  }
  return out;
}

/** Reference schemas per (server, version), built once per instance. */
export function createSchemaReferences(deps: { config: Config; servers: ServerRegistry; set: MigrationSet }) {
  const { config, servers, set } = deps;
  const cache = new Map<string, Promise<SchemaShape>>();

  async function build(serverId: number, version: string | null): Promise<SchemaShape> {
    // One name per version and folder: two processes building the same reference take turns (the lock below).
    const tag = createHash('sha256')
      .update(`${set.dir}\0${version ?? ''}`)
      .digest('hex')
      .slice(0, 10);
    const name = `${config.db.name}_ref_${tag}`;
    const session = await servers.adminSession(serverId);
    try {
      const [got] = await session.query<{ got: number }>('SELECT GET_LOCK(?, ?) AS got', {
        replacements: [`tenancy:schema-ref:${name}`, config.migrationLockWaitSec],
        type: QueryTypes.SELECT,
      });
      if (got?.got !== 1) throw new Error(`another process is building the reference schema ${name}`);
      const db = quoteIdentifier(name);
      await session.query(`DROP DATABASE IF EXISTS ${db}`);
      await session.query(`CREATE DATABASE ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
      try {
        await session.query(`USE ${db}`);
        if (version !== null) {
          if (!set.names.includes(version)) throw new Error(`version ${version} is not among the migrations in ${set.dir}`);
          await sessionMigrator(set, session).up({ to: version });
        }
        return await readShape(session, name);
      } finally {
        await session.query(`DROP DATABASE IF EXISTS ${db}`);
      }
    } finally {
      await session.close();
    }
  }

  return {
    /** The schema the migrations produce up to `version` on that server. */
    shape(serverId: number, version: string | null): Promise<SchemaShape> {
      const key = `${serverId}:${version}`;
      let p = cache.get(key);
      if (!p) {
        p = build(serverId, version);
        p.catch(() => cache.delete(key));
        cache.set(key, p);
      }
      return p;
    },
  };
}

export type SchemaReferences = ReturnType<typeof createSchemaReferences>;

/** What each tenant database's own schema_migrations says, per server, read in a few queries per server. */
export async function readFleetApplied(
  servers: ServerRegistry,
  refs: readonly TenantDbRef[],
): Promise<Map<string, { last: string | null; count: number } | 'missing' | { error: string }>> {
  const out = new Map<string, { last: string | null; count: number } | 'missing' | { error: string }>();
  const byServer = groupByServer(refs);
  await Promise.all(
    [...byServer].map(async ([serverId, list]) => {
      const key = (db: string) => `${serverId}:${db}`;
      try {
        const admin = await servers.admin(serverId);
        const names = list.map((r) => r.dbName);
        const present = await withMigrationsTable(admin, likePrefix(commonPrefix(names)));
        const applied = await readApplied(
          admin,
          names.filter((n) => present.has(n)),
        );
        for (const n of names) out.set(key(n), applied.get(n) ?? 'missing');
      } catch (err) {
        for (const r of list) out.set(key(r.dbName), { error: describeError(err) });
      }
    }),
  );
  return out;
}

/** The doctor: compares every operational tenant's schema with the reference of its own version. */
export async function runDoctor(deps: {
  servers: ServerRegistry;
  versions: SchemaVersions;
  references: SchemaReferences;
  set: MigrationSet;
}): Promise<DriftReport> {
  const { servers, versions, references, set } = deps;
  const tenants = await versions.tenants();
  const applied = await readFleetApplied(servers, tenants);
  const report: DriftReport = { checked: tenants.length, drifted: [], servers: [] };
  const byServer = groupByServer(tenants);
  await Promise.all(
    [...byServer].map(async ([serverId, list]) => {
      let shapes: Map<string, SchemaShape>;
      try {
        // The references first: only their tables' columns and indexes are read from the tenants (others just listed).
        const versionsHere = new Set(
          list.map((t) => applied.get(`${serverId}:${t.dbName}`)).flatMap((a) => (typeof a === 'object' && 'last' in a ? [a.last] : [])),
        );
        const tables = new Set<string>();
        for (const v of versionsHere)
          for (const t of (await references.shape(serverId, v).catch(() => new Map())).keys()) tables.add(t as string);
        const like = likePrefix(commonPrefix(list.map((t) => t.dbName)));
        const admin = await servers.admin(serverId);
        // One listing of the tenants' tables serves the shapes and the table-cache advice.
        const listed = await listTables(admin, like);
        [shapes] = await Promise.all([
          readShapes(admin, like, [...tables], listed),
          // Advice only: a failure to read it never turns into drift.
          readServerTables(admin, serverId, listed.length).then(
            (x) => void report.servers.push(x),
            () => undefined,
          ),
        ]);
      } catch (err) {
        for (const t of list) report.drifted.push({ ...t, differences: [`server ${serverId} could not be read: ${describeError(err)}`] });
        return;
      }
      for (const t of list) {
        const differences: string[] = [];
        const a = applied.get(`${serverId}:${t.dbName}`);
        const shape = shapes.get(t.dbName);
        if (!shape) differences.push(`database ${t.dbName} does not exist on server ${serverId} (or has no table)`);
        else if (a === 'missing' || a === undefined) differences.push('no schema_migrations table');
        else if ('error' in a) differences.push(`schema_migrations could not be read: ${a.error}`);
        else {
          const expectedCount = a.last === null ? 0 : set.names.indexOf(a.last) + 1;
          if (a.last !== null && expectedCount === 0) differences.push(`applied migration ${a.last} is not among the known migrations`);
          else if (a.count !== expectedCount)
            differences.push(`schema_migrations lists ${a.count} migration(s) up to ${a.last}, expected ${expectedCount}`);
          if (t.version !== undefined && t.version !== a.last)
            differences.push(`the control plane records version ${t.version}, the database's schema_migrations says ${a.last}`);
          if (expectedCount > 0 || a.last === null) {
            try {
              differences.push(...diffShapes(shape, await references.shape(serverId, a.last)));
            } catch (err) {
              differences.push(`reference schema for ${a.last} could not be built: ${describeError(err)}`);
            }
          }
        }
        if (differences.length) report.drifted.push({ orgId: t.orgId, serverId, dbName: t.dbName, differences });
      }
    }),
  );
  report.drifted.sort((x, y) => (x.orgId ?? 0) - (y.orgId ?? 0) || x.dbName.localeCompare(y.dbName));
  report.servers.sort((x, y) => x.serverId - y.serverId);
  return report;
}
