/**
 * What other components may use of orgs (the lint fence lets `messages` import nothing else of this folder): the org
 * and its rules, its tenant database, the registry, ledger and repository they read, and the tenant edge of the API.
 */
export {
  isOperational,
  isProvisioned,
  provisioned,
  type ApiKeyRecord,
  type OrgRecord,
  type OrgStatus,
  type ProvisionedOrg,
} from './domain/org.js';
export type { TenantDbs } from './domain/tenant-dbs.js';
export type { OrgRegistry } from './domain/org-registry.js';
export type { OrgEvents } from './domain/org-events.js';
export type { OrgService } from './domain/orgs.service.js';
export type { TenantBackups } from './domain/tenant-backups.js';
export type { ServerRegistry } from './domain/server-registry.js';
export type { OrgRepository } from './data-access/org.repository.js';
export { ledgerKey, type Ledger, type LedgerEntry } from './data-access/ledger.js';
export { requireTenant } from './entry-points/http/auth.js';
export { chargeOrg, orgRateLimit } from './entry-points/http/org-rate-limit.js';
export { idParams as orgIdParams } from './entry-points/http/orgs.routes.js';
export { orgIdRule, deliveryConcurrencyRule, MAX_DELIVERY_CONCURRENCY } from './domain/org.rules.js';
