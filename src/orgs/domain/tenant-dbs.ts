/**
 * Orgs' tenant databases: an org's database (its TenantDb) leased for one unit of work (a request, a job), over the
 * platform's tenant connections. The org rules that decide whether its database may be used live here, not there.
 */
import { unavailable } from '../../platform/lib/errors.js';
import { isWritesPaused } from '../../platform/lib/infrastructure-errors.js';
import type { TenantDb } from '../../platform/tenant-connections/sequelize-lease.js';
import type { TenantConnections } from '../../platform/tenant-connections/tenant-connections.js';
import type { ProvisionedOrg } from './org.js';

export interface TenantDbs extends Omit<TenantConnections, 'withTenant'> {
  /** Runs fn with the org's database leased; a write refused by a move's final pause is 503 TENANT_MOVING. */
  withTenant<T>(org: ProvisionedOrg, fn: (db: TenantDb) => Promise<T>): Promise<T>;
}

/** Wraps the process's tenant connections for orgs. */
export function createTenantDbs(connections: TenantConnections): TenantDbs {
  return {
    withTenant(org, fn) {
      // A move copies while the tenant works; only the final delta pauses writes, refused by the moving database's own
      // write fence (its triggers, change-capture.ts): a short 503, retried on the new server.
      return connections.withTenant(org, fn).catch((err: unknown) => {
        throw isWritesPaused(err)
          ? unavailable('TENANT_MOVING', "the organisation's database is being moved; try again shortly", 1000, err)
          : err;
      });
    },
    evict: (orgId) => connections.evict(orgId),
    stats: () => connections.stats(),
    serverStats: () => connections.serverStats(),
    close: (deadlineMs) => connections.close(deadlineMs),
  };
}
