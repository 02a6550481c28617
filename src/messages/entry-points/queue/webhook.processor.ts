/** The BullMQ adapter of the status-webhook use case: the job's id is the `webhook-id`, its timestamp the event time. */
import type { Job } from 'bullmq';
import { runWithContext } from '../../../platform/lib/context.js';
import type { WebhookJob } from '../../../platform/queue/queues.js';
import type { NotifyWebhook, WebhookOutcome } from '../../domain/notify-webhook.js';

export function webhookProcessor(notify: NotifyWebhook) {
  return async function process(job: Job<WebhookJob>): Promise<WebhookOutcome> {
    const { orgId, messageId } = job.data;
    return runWithContext({ jobId: job.id, orgId, messageId }, () => notify({ ...job.data, webhookId: job.id!, reachedAt: job.timestamp }));
  };
}
