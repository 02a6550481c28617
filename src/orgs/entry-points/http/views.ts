/** Presenters: the JSON views of orgs and messages that the API (and the CLI's --json) answer with. */
import type { MessageRecord } from '../../../messages/domain/message.js';
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
  };
}

/** The JSON shape of a message in API responses. */
export function messageView(m: MessageRecord) {
  return {
    id: Number(m.id),
    to: m.to,
    channel: m.channel,
    body: m.body,
    status: m.status,
    cost: m.cost,
    attempts: m.attempts,
    errorCode: m.errorCode ?? null,
    errorText: m.errorText ?? null,
    providerMessageId: m.providerMessageId ?? null,
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
    sentAt: m.sentAt ?? null,
  };
}

/**
 * The message as it was answered when accepted (202): what an Idempotency-Key replay answers again, whatever has
 * happened to it since (GET /messages/:id shows that).
 */
export function acceptedView(m: MessageRecord) {
  return {
    ...messageView(m),
    status: 'QUEUED' as const,
    attempts: 0,
    errorCode: null,
    errorText: null,
    providerMessageId: null,
    updatedAt: m.createdAt,
    sentAt: null,
  };
}
