/** Migrations across tenants: migrate (bounded concurrency, lock per tenant DB), status and rollback. */
import type { Sequelize } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { mapWithConcurrency } from '../../platform/lib/concurrency.js';
import {
  TENANT_MIGRATIONS_DIR,
  MigrationLockedError,
  createMigrator,
  withMigrationLock,
  type Migrator,
} from '../../platform/db/migrator.js';
import { describeError } from '../../platform/lib/errors.js';
import { MIGRATABLE_STATUSES, isOperational, isProvisioned, type ProvisionedOrg } from './org.js';
import type { OrgRepository } from '../data-access/org.repository.js';
import type { SchemaVersions } from '../data-access/schema-versions.js';
import type { ServerRegistry } from './server-registry.js';

/** `skipped`: the org was dropped (or stopped being operational) during the rollout. */
export type TenantResultKind = 'ok' | 'failed' | 'locked' | 'not-run' | 'skipped';

export interface TenantMigrationResult {
  orgId: number;
  dbName: string;
  result: TenantResultKind;
  migrations: string[];
  ms: number;
  error?: string;
}

export interface TenantStatus {
  orgId: number;
  dbName: string;
  applied: string[];
  pending: string[];
  error?: string;
}

export function createTenantMigrations(deps: { config: Config; repo: OrgRepository; servers: ServerRegistry; versions?: SchemaVersions }) {
  const { config, repo, servers } = deps;
  const dir = config.tenantMigrationsDir ?? TENANT_MIGRATIONS_DIR;
  /** Keeps the control plane's record of the tenant's version true after it changed (up or down). */
  const record = async (org: ProvisionedOrg, m: Migrator) =>
    deps.versions?.record([
      { serverId: org.dbServerId, dbName: org.dbName, orgId: org.id, version: (await m.executed()).at(-1)?.name ?? null },
    ]);

  async function targets(ids?: readonly number[]): Promise<ProvisionedOrg[]> {
    if (ids?.length) {
      const found = await Promise.all(ids.map((id) => repo.get(id)));
      const missing = ids.filter((_, i) => !found[i] || !isOperational(found[i]));
      if (missing.length) throw new Error(`unknown tenant(s): ${missing.join(', ')}`);
      return found.filter((o) => o !== undefined && isOperational(o));
    }
    const all: ProvisionedOrg[] = [];
    for (let after = 0; ;) {
      const page = await repo.list({ limit: 500, after, statuses: MIGRATABLE_STATUSES });
      all.push(...page.filter(isProvisioned));
      if (page.length < 500) return all;
      after = page[page.length - 1]!.id;
    }
  }

  async function withTenantMigrator<T>(org: ProvisionedOrg, fn: (m: Migrator, db: Sequelize) => Promise<T>): Promise<T> {
    const db = await servers.adminForDatabase(org.dbServerId, org.dbName);
    try {
      return await fn(createMigrator({ sequelize: db, dir }), db);
    } finally {
      await db.close();
    }
  }

  return {
    targets,
    /** Migrates each tenant up; a failure stops new starts unless skipFailing. Never throws for one tenant. */
    async migrate(opts: {
      ids?: readonly number[];
      concurrency: number;
      skipFailing: boolean;
      onResult?: (r: TenantMigrationResult, done: number, total: number) => void;
    }) {
      const orgs = await targets(opts.ids);
      let done = 0;
      const results = await mapWithConcurrency(
        orgs,
        opts.concurrency,
        async (org): Promise<TenantMigrationResult> => {
          const started = Date.now();
          let r: TenantMigrationResult;
          try {
            const applied = await withTenantMigrator(org, (m, db) =>
              withMigrationLock(db, org.dbName, config.migrationLockWaitSec, async () => {
                try {
                  return await m.up();
                } finally {
                  await record(org, m);
                }
              }),
            );
            r = { orgId: org.id, dbName: org.dbName, result: 'ok', migrations: applied.map((a) => a.name), ms: Date.now() - started };
          } catch (err) {
            const locked = err instanceof MigrationLockedError;
            r = {
              orgId: org.id,
              dbName: org.dbName,
              result: locked ? 'locked' : 'failed',
              migrations: [],
              ms: Date.now() - started,
              error: describeError(err),
            };
          }
          opts.onResult?.(r, ++done, orgs.length);
          return r;
        },
        (r) => r.result !== 'ok' && !opts.skipFailing,
      );
      const seen = new Set(results.map((r) => r.orgId));
      const notRun = orgs
        .filter((o) => !seen.has(o.id))
        .map((o): TenantMigrationResult => ({ orgId: o.id, dbName: o.dbName, result: 'not-run', migrations: [], ms: 0 }));
      return [...results, ...notRun];
    },
    /** Applied and pending migrations per tenant. */
    async status(opts: { ids?: readonly number[]; concurrency: number }): Promise<TenantStatus[]> {
      const orgs = await targets(opts.ids);
      return mapWithConcurrency(orgs, opts.concurrency, async (org) => {
        try {
          return await withTenantMigrator(org, async (m) => ({
            orgId: org.id,
            dbName: org.dbName,
            applied: (await m.executed()).map((x) => x.name),
            pending: (await m.pending()).map((x) => x.name),
          }));
        } catch (err) {
          return { orgId: org.id, dbName: org.dbName, applied: [], pending: [], error: describeError(err) };
        }
      });
    },
    /** Reverts the last `step` migrations of each tenant. */
    async rollback(opts: { ids?: readonly number[]; step: number; concurrency: number }): Promise<TenantMigrationResult[]> {
      const orgs = await targets(opts.ids);
      return mapWithConcurrency(orgs, opts.concurrency, async (org) => {
        const started = Date.now();
        try {
          const reverted = await withTenantMigrator(org, (m, db) =>
            withMigrationLock(db, org.dbName, config.migrationLockWaitSec, async () => {
              try {
                return await m.down({ step: opts.step });
              } finally {
                await record(org, m); // also after a partial rollback: the record must never claim more than the tenant has
              }
            }),
          );
          return {
            orgId: org.id,
            dbName: org.dbName,
            result: 'ok' as const,
            migrations: reverted.map((a) => a.name),
            ms: Date.now() - started,
          };
        } catch (err) {
          const result = err instanceof MigrationLockedError ? ('locked' as const) : ('failed' as const);
          return { orgId: org.id, dbName: org.dbName, result, migrations: [], ms: Date.now() - started, error: describeError(err) };
        }
      });
    },
  };
}

export type TenantMigrations = ReturnType<typeof createTenantMigrations>;
