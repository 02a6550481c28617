/**
 * Posts a message's final status to the org's webhook URL, signed the Standard Webhooks way
 * (`webhook-id`, `webhook-timestamp`, `webhook-signature`). Any non-2xx answer or timeout throws, so BullMQ retries.
 */
import type { Job } from 'bullmq';
import type { Logger } from '../src/lib/logger.js';
import { runWithContext } from '../src/lib/context.js';
import type { SecretBox } from '../src/lib/secrets.js';
import { messageModel } from '../src/messages/message.model.js';
import type { WebhookJob } from '../src/queue/queues.js';
import type { OrgRepository } from '../src/tenancy/org.repository.js';
import type { TenantPoolCache } from '../src/tenancy/pool-cache.js';
import { signWebhook } from '../src/webhooks/signature.js';

export type WebhookOutcome = 'delivered' | 'no-endpoint' | 'gone';

/** Creates the webhook processor. */
export function createWebhookProcessor(deps: { repo: OrgRepository; pools: TenantPoolCache; secrets: SecretBox; logger: Logger; timeoutMs: number }) {
  return async function notify(job: Job<WebhookJob>): Promise<WebhookOutcome> {
    const { orgId, messageId, status } = job.data;
    return runWithContext({ jobId: job.id, orgId, messageId }, async () => {
      const org = await deps.repo.get(orgId);
      if (!org?.webhookUrl || !org.webhookSecretEnc) return 'no-endpoint';
      const m = await deps.pools.withTenant(org, (db) => messageModel(db).findByPk(messageId));
      if (!m) return 'gone';
      const body = JSON.stringify({
        type: status === 'SENT' ? 'message.sent' : 'message.failed',
        timestamp: new Date(job.timestamp).toISOString(), // when the status was reached: the same on every retry
        data: {
          id: Number(m.id), orgId, to: m.to, channel: m.channel, status, cost: m.cost, attempts: m.attempts,
          errorCode: m.errorCode ?? null, errorText: m.errorText ?? null, providerMessageId: m.providerMessageId ?? null,
          createdAt: m.createdAt, sentAt: m.sentAt ?? null,
        },
      });
      const id = job.id!;
      const timestamp = Math.floor(Date.now() / 1000);
      const res = await fetch(org.webhookUrl, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.timeout(deps.timeoutMs),
        headers: {
          'Content-Type': 'application/json',
          'webhook-id': id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(deps.secrets.decrypt(org.webhookSecretEnc), id, timestamp, body),
        },
        body,
      });
      await res.body?.cancel();
      if (res.status < 200 || res.status >= 300) throw new Error(`webhook endpoint answered ${res.status}`);
      deps.logger.info('webhook delivered', { status });
      return 'delivered';
    });
  };
}
