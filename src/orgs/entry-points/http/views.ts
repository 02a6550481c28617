/** The JSON views of an org that the API (and the CLI's --json) answer with. */
import type { OrgRecord } from '../../domain/org.js';

/** The public view of an org (what a tenant sees; admins get `adminView`). */
export function publicView(org: OrgRecord) {
  return {
    id: org.id,
    name: org.name,
    status: org.status,
    creditBalance: org.creditBalance,
    createdAt: org.createdAt,
    updatedAt: org.updatedAt,
  };
}

/** The admin view: where it lives and how provisioning went; never a credential. */
export function adminView(org: OrgRecord) {
  return {
    ...publicView(org),
    dbServerId: org.dbServerId,
    dbName: org.dbName,
    provisioningStep: org.provisioningStep,
    lastError: org.lastError,
    rateLimit: org.rateLimit,
    deliveryConcurrency: org.deliveryConcurrency,
    webhookUrl: org.webhookUrl,
    movingSince: org.movingSince,
    droppedAt: org.droppedAt,
    purgedAt: org.purgedAt,
  };
}
