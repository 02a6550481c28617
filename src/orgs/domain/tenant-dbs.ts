/**
 * Orgs' tenant databases: an org's Sequelize instance leased for one unit of work (a request, a job), over the
 * platform's tenant connections. The org rules that decide whether its database may be used live here, not there.
 */
import type { Sequelize } from 'sequelize';
import { unavailable } from '../../platform/lib/errors.js';
import type { TenantConnections } from '../../platform/tenant-connections/tenant-connections.js';
import type { ProvisionedOrg } from './org.js';

export interface TenantDbs extends Omit<TenantConnections, 'withTenant'> {
  /** Runs fn with the org's database leased; refused (503 TENANT_MOVING) while it is being moved to another server. */
  withTenant<T>(org: ProvisionedOrg, fn: (db: Sequelize) => Promise<T>): Promise<T>;
}

/** Wraps the process's tenant connections for orgs. */
export function createTenantDbs(connections: TenantConnections): TenantDbs {
  return {
    withTenant(org, fn) {
      // Refused until the switch, so nothing writes to the old copy (bin/tenant move).
      if (org.movingSince)
        return Promise.reject(unavailable('TENANT_MOVING', "the organisation's database is being moved; try again shortly", 5000));
      return connections.withTenant(org, fn);
    },
    evict: (orgId) => connections.evict(orgId),
    stats: () => connections.stats(),
    serverStats: () => connections.serverStats(),
    close: (deadlineMs) => connections.close(deadlineMs),
  };
}
