/**
 * The status-webhook use case: posts a message's final status to the org's webhook URL, signed the Standard Webhooks
 * way (`webhook-id`, `webhook-timestamp`, `webhook-signature`). Any non-2xx answer or timeout throws, so the queue
 * retries. Knows nothing of BullMQ: src/messages/entry-points/queue/webhook.processor.ts adapts it.
 */
import type { Logger } from '../../platform/lib/logger.js';
import type { SecretBox } from '../../platform/lib/secrets.js';
import { findMessage } from '../data-access/messages.repository.js';
import { signWebhook } from '../../platform/webhooks/signature.js';
import { ForbiddenWebhookTarget, postWebhook } from '../../platform/webhooks/webhook-post.js';
import { type OrgRepository, isProvisioned, type TenantDbs } from '../../orgs/index.js';

export type WebhookOutcome = 'delivered' | 'no-endpoint' | 'forbidden' | 'gone';

/** One notification: which message reached which final status, with the id and time receivers dedupe and sort on. */
export interface WebhookInput {
  orgId: number;
  messageId: number;
  status: 'SENT' | 'FAILED';
  /** Stable across retries: the `webhook-id` header. */
  webhookId: string;
  /** When the status was reached (ms): the same on every retry. */
  reachedAt: number;
}

export function createNotifyWebhook(deps: {
  /** WEBHOOK_ALLOW_PRIVATE: post to internal addresses too (development only). */
  allowPrivate: boolean;
  repo: OrgRepository;
  tenantDbs: TenantDbs;
  secrets: SecretBox;
  logger: Logger;
  timeoutMs: number;
}) {
  return async function notify(input: WebhookInput): Promise<WebhookOutcome> {
    const { orgId, messageId, status } = input;
    const org = await deps.repo.get(orgId);
    if (!org?.webhookUrl || !org.webhookSecretEnc || !isProvisioned(org)) return 'no-endpoint';
    const m = await deps.tenantDbs.withTenant(org, (db) => findMessage(db, messageId));
    if (!m) return 'gone';
    const body = JSON.stringify({
      type: status === 'SENT' ? 'message.sent' : 'message.failed',
      timestamp: new Date(input.reachedAt).toISOString(),
      data: {
        id: Number(m.id),
        orgId,
        to: m.to,
        channel: m.channel,
        status,
        cost: m.cost,
        attempts: m.attempts,
        errorCode: m.errorCode ?? null,
        errorText: m.errorText ?? null,
        providerMessageId: m.providerMessageId ?? null,
        createdAt: m.createdAt,
        sentAt: m.sentAt ?? null,
      },
    });
    const timestamp = Math.floor(Date.now() / 1000);
    try {
      // Checked again here, after DNS resolution, and connected to exactly the checked address: rebinding cannot work.
      await postWebhook({
        url: org.webhookUrl,
        allowPrivate: deps.allowPrivate,
        timeoutMs: deps.timeoutMs,
        headers: {
          'Content-Type': 'application/json',
          'webhook-id': input.webhookId,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(deps.secrets.decrypt(org.webhookSecretEnc), input.webhookId, timestamp, body),
        },
        body,
      });
    } catch (err) {
      if (!(err instanceof ForbiddenWebhookTarget)) throw err;
      // Not worth retrying: the URL points inside (or its name resolves inside).
      deps.logger.warn('webhook refused: the endpoint is an internal address', { err: err.message });
      return 'forbidden';
    }
    deps.logger.info('webhook delivered', { status });
    return 'delivered';
  };
}

export type NotifyWebhook = ReturnType<typeof createNotifyWebhook>;
