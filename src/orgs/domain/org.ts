/** What an org is, and the rules about it that every layer shares: statuses, names, "provisioned", "operational". */

/** The statuses an org can be seen in (API, CLI, filters). */
export const ORG_STATUSES = ['PROVISIONING', 'ACTIVE', 'SUSPENDED', 'FAILED', 'DELETED'] as const;
/**
 * POOLED: a tenant of the warm pool, provisioned ahead of any signup and not yet anyone's org (src/orgs/domain/
 * tenant-pool.ts). Never shown: reads and lists treat it as absent.
 */
export type OrgStatus = (typeof ORG_STATUSES)[number] | 'POOLED';

/** The statuses whose databases fleet migrations keep at the latest version. */
export const MIGRATABLE_STATUSES = ['ACTIVE', 'SUSPENDED', 'POOLED'] as const;

/** The statuses an admin may set (the others belong to provisioning and dropping). */
export const SETTABLE_STATUSES = ['ACTIVE', 'SUSPENDED'] as const;

export interface OrgRecord {
  id: number;
  name: string;
  /** Random identity, written into the org's tenant DB as its ownership marker. */
  uid: string;
  status: OrgStatus;
  creditBalance: number;
  dbServerId: number | null;
  dbName: string | null;
  dbUser: string | null;
  dbPasswordEnc: string | null;
  provisioningStep: string | null;
  lastError: string | null;
  rateLimit: { points: number; duration: number } | null;
  /** How many of its deliveries may run at once across every worker; null: ORG_DELIVERY_CONCURRENCY. */
  deliveryConcurrency: number | null;
  webhookUrl: string | null;
  webhookSecretEnc: string | null;
  /** Set while its database is being moved to another server (`bin/tenant move`); it keeps working meanwhile. */
  movingSince: Date | null;
  /** The server a move in progress copies the database to. */
  movingToServerId: number | null;
  /** Set while the org is a warm-pool tenant (made ahead, not yet claimed by a create). */
  pooledSince: Date | null;
  /** When it was dropped (status DELETED): its database and locked user are kept until purged. */
  droppedAt: Date | null;
  /** When its database, user and keys were removed (after the retention period, or `bin/tenant purge`). */
  purgedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** An org whose database has been named and placed (set in the transaction that creates it). */
export type ProvisionedOrg = OrgRecord & { dbServerId: number; dbName: string; dbUser: string; dbPasswordEnc: string };

export interface ApiKeyRecord {
  id: number;
  orgId: number;
  prefix: string;
  keyHash: string;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** True when the org has a database to connect to. */
export function isProvisioned(org: OrgRecord): org is ProvisionedOrg {
  return org.dbServerId !== null && org.dbName !== null && org.dbUser !== null && org.dbPasswordEnc !== null;
}

/** The org as a provisioned one, or an error naming what is missing (a broken shared-DB row). */
export function provisioned(org: OrgRecord): ProvisionedOrg {
  if (!isProvisioned(org)) throw new Error(`org ${org.id} has no database yet (status ${org.status})`);
  return org;
}

/** Provisioned and not dropped: its database holds messages, is migrated, and may be suspended or resumed. */
export function isOperational(org: OrgRecord): org is ProvisionedOrg {
  return (org.status === 'ACTIVE' || org.status === 'SUSPENDED') && isProvisioned(org);
}
