/** Admin use cases on orgs, shared by the HTTP API and `bin/tenant`: every change is published to other processes. */
import { createHash } from 'node:crypto';
import type { Ledger, LedgerEntry } from '../data-access/ledger.js';
import { badRequest, conflict, notFound, unprocessable } from '../../platform/lib/errors.js';
import { checkWebhookUrl } from '../../platform/webhooks/webhook-url.js';
import { generateApiKey, type SecretBox } from '../../platform/lib/secrets.js';
import { generateWebhookSecret } from '../../platform/webhooks/signature.js';
import type { OrgEvents } from './org-events.js';
import { isOperational, type ApiKeyRecord, type OrgRecord, type OrgStatus } from './org.js';
import type { OrgRepository } from '../data-access/org.repository.js';
import type { Provisioner, ProvisionResult } from './provisioner.js';
import type { TenantMover } from './tenant-mover.js';
import type { TenantPool } from './tenant-pool.js';

export interface OrgPatch {
  status?: 'ACTIVE' | 'SUSPENDED';
  rateLimit?: { points: number; duration: number } | null;
  /** Deliveries of the org that may run at once across every worker; null: back to ORG_DELIVERY_CONCURRENCY. */
  deliveryConcurrency?: number | null;
  webhookUrl?: string | null;
  /** Issue a new webhook signing secret (one is issued anyway when the first webhook URL is set). */
  rotateWebhookSecret?: boolean;
}

export interface CreditResult {
  org: OrgRecord;
  entry: LedgerEntry;
  replayed: boolean;
}

export function createOrgService(deps: {
  repo: OrgRepository;
  ledger: Ledger;
  provisioner: Provisioner;
  /** The warm pool: a create claims a pooled tenant when one is ready, and provisions inline otherwise. */
  pool?: Pick<TenantPool, 'claim'>;
  /** Moves of tenant databases: a drop waits for (and ends) any move of the org first. */
  moves?: Pick<TenantMover, 'exclusive'>;
  events: OrgEvents;
  secrets: SecretBox;
  /** WEBHOOK_ALLOW_PRIVATE: accept webhook URLs on internal addresses (development only). */
  webhookAllowPrivate?: boolean;
}) {
  const { repo, ledger, provisioner, events, secrets } = deps;

  async function mustGet(id: number): Promise<OrgRecord> {
    const org = await repo.get(id);
    // A warm-pool tenant is no one's org yet.
    if (!org || org.status === 'DELETED' || org.status === 'POOLED') throw notFound('ORG_NOT_FOUND', `org ${id} does not exist`);
    return org;
  }

  async function changed(id: number, reason: string): Promise<OrgRecord> {
    await events.publish({ orgId: id, reason });
    return mustGet(id);
  }

  return {
    get: mustGet,
    async create(input: { name: string; credits: number; server?: string }): Promise<ProvisionResult> {
      const result = (await deps.pool?.claim(input)) ?? (await provisioner.create(input));
      // Another process may hold a negative cache entry for this id from before it existed.
      await events.publish({ orgId: result.org.id, reason: 'created' });
      return result;
    },
    async provision(id: number): Promise<ProvisionResult> {
      const result = await provisioner.provision(id);
      await events.publish({ orgId: id, reason: 'provisioned' });
      return result;
    },
    /** The current balance, read fresh (not from any cache). */
    balance: (id: number) => repo.balance(id),
    list: (opts: { limit: number; after?: number; statuses?: readonly OrgStatus[] }) => repo.list(opts),

    /** Applies the patch; `webhookSecret` is returned (once) when a new signing secret was issued. */
    async patch(id: number, patch: OrgPatch): Promise<{ org: OrgRecord; webhookSecret?: string }> {
      const org = await mustGet(id);
      if (patch.status && patch.status !== org.status && !isOperational(org)) {
        throw conflict('ORG_NOT_READY', `org ${id} is ${org.status}; only ACTIVE and SUSPENDED orgs can change status`);
      }
      if (patch.webhookUrl) {
        const problem = checkWebhookUrl(patch.webhookUrl, { allowPrivate: deps.webhookAllowPrivate ?? false });
        if (problem) throw badRequest('WEBHOOK_URL_FORBIDDEN', problem);
      }
      const issueSecret = patch.rotateWebhookSecret || (patch.webhookUrl && !org.webhookSecretEnc);
      const webhookSecret = issueSecret ? generateWebhookSecret() : undefined;
      await repo.update(id, {
        ...(patch.status ? { status: patch.status } : {}),
        ...(patch.rateLimit !== undefined
          ? { rateLimitPoints: patch.rateLimit?.points ?? null, rateLimitDuration: patch.rateLimit?.duration ?? null }
          : {}),
        ...(patch.deliveryConcurrency !== undefined ? { deliveryConcurrency: patch.deliveryConcurrency } : {}),
        ...(patch.webhookUrl !== undefined ? { webhookUrl: patch.webhookUrl } : {}),
        ...(webhookSecret ? { webhookSecretEnc: secrets.encrypt(webhookSecret) } : {}),
      });
      const updated = await changed(id, 'updated');
      return webhookSecret ? { org: updated, webhookSecret } : { org: updated };
    },

    /**
     * Grants (amount > 0) or adjusts (amount < 0, never below zero) the balance, once per reference.
     * Replaying a reference with another amount is refused.
     */
    async credit(id: number, amount: number, reference: string): Promise<CreditResult> {
      await mustGet(id);
      const kind = amount > 0 ? 'grant' : 'adjustment';
      // credit_ledger.reference is VARCHAR(191): a longer one (`admin:` + a long Idempotency-Key) is stored as its
      // SHA-256, so the same key still replays. No caller's references start with `sha256:`, so none can collide.
      if (reference.length > 191) reference = `sha256:${createHash('sha256').update(reference).digest('hex')}`;
      const r = await ledger.apply({ orgId: id, kind, amount, reference });
      if (r.outcome === 'insufficient')
        throw conflict('INSUFFICIENT_BALANCE', `balance ${r.balance} cannot go below zero`, { balance: r.balance });
      if (r.outcome === 'no-org') throw notFound('ORG_NOT_FOUND', `org ${id} does not exist`);
      if (r.outcome === 'duplicate' && (r.entry.amount !== amount || r.entry.kind !== kind)) {
        throw unprocessable('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different request');
      }
      return { org: await changed(id, 'credits'), entry: r.entry, replayed: r.outcome === 'duplicate' };
    },

    async createKey(id: number, name = 'default'): Promise<{ key: string; record: ApiKeyRecord }> {
      const org = await mustGet(id);
      if (!isOperational(org)) throw conflict('ORG_NOT_READY', `org ${id} is ${org.status}`);
      const k = generateApiKey();
      await repo.insertKey({ orgId: id, prefix: k.prefix, keyHash: k.hash, name });
      return { key: k.key, record: (await repo.findKey(k.prefix))! };
    },
    async listKeys(id: number): Promise<ApiKeyRecord[]> {
      await mustGet(id);
      return repo.listKeys(id);
    },
    async revokeKey(id: number, prefix: string): Promise<void> {
      await mustGet(id);
      if (!(await repo.revokeKey(id, prefix))) throw notFound('KEY_NOT_FOUND', `org ${id} has no active key ${prefix}`);
      await events.publish({ orgId: id, reason: 'key-revoked' });
    },

    async drop(id: number): Promise<OrgRecord> {
      await mustGet(id);
      // A move running or left over would keep a full copy (and a working MySQL user) on its target: ended first.
      const org = deps.moves ? await deps.moves.exclusive(id, () => provisioner.drop(id)) : await provisioner.drop(id);
      await events.publish({ orgId: id, reason: 'dropped' });
      return org;
    },
    /** Brings a dropped org back as it was (until it is purged). */
    async undrop(id: number): Promise<OrgRecord> {
      const org = await provisioner.undrop(id);
      await events.publish({ orgId: id, reason: 'undropped' });
      return org;
    },
    /** Removes a dropped org's database, MySQL user and keys for good (its row and ledger stay). */
    async purge(id: number): Promise<OrgRecord> {
      const org = await provisioner.purge(id);
      await events.publish({ orgId: id, reason: 'purged' });
      return org;
    },
    /** Purges the dropped orgs past TENANT_RETENTION_DAYS (the reconciler's sweep calls it). */
    async purgeExpired(): Promise<number[]> {
      const ids = await provisioner.purgeExpired();
      for (const id of ids) await events.publish({ orgId: id, reason: 'purged' });
      return ids;
    },
  };
}

export type OrgService = ReturnType<typeof createOrgService>;
