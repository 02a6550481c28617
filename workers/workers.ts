/** Starts every worker of a worker process: deliveries and status webhooks, each a BullMQ adapter over a src/ use case. */
import type { Config } from '../config/config.js';
import type { Deps } from '../src/deps.js';
import { createDeliverMessage, type DeliveryOutcome } from '../src/delivery/deliver-message.js';
import { createReconciler, type Reconciler } from '../src/delivery/reconciler.js';
import { DELIVERY_QUEUE, WEBHOOK_QUEUE, enqueueWebhook, type DeliveryJob, type WebhookJob } from '../src/queue/queues.js';
import { createNotifyWebhook, type WebhookOutcome } from '../src/webhooks/notify-webhook.js';
import { deliveryProcessor } from './delivery.worker.js';
import { gateByOrg } from './org-gate.js';
import { startWorker, type RunningWorker } from './start-worker.js';
import { webhookProcessor } from './webhook.worker.js';
import { tracing } from '../src/telemetry/tracing.js';

export interface Workers {
  reconciler: Reconciler;
  delivery: RunningWorker<DeliveryJob, DeliveryOutcome>;
  webhooks: RunningWorker<WebhookJob, WebhookOutcome>;
  /** Stops taking jobs and lets active ones finish (for at most `deadlineMs`). */
  close(deadlineMs?: number): Promise<void>;
}

/** Starts the delivery and webhook workers over the given deps. */
export function startWorkers(config: Config, deps: Deps): Workers {
  const { repo, pools, ledger, gateway, logger, secrets, metrics } = deps;
  const deliver = createDeliverMessage({
    // The org through the registry: cached, and dropped at once by every change (suspend, move, credentials) that
    // is published; a round trip per message saved. A lost event is bounded by ORG_CACHE_TTL_MS.
    orgs: deps.registry,
    pools,
    ledger,
    gateway,
    logger,
    metrics,
    // Enqueue failures are logged, never thrown: a webhook problem must not hold up or repeat a delivery.
    async onFinal(org, message) {
      if (!org.webhookUrl) return;
      const job: WebhookJob = { orgId: org.id, messageId: message.id, status: message.status };
      // At the org's fair share: one tenant's flood of webhooks never holds up another's.
      await enqueueWebhook(deps.webhookQueue, job, deps.fairShare.webhooks.next(org.id)).catch((err: Error) =>
        logger.warn('could not enqueue webhook', { err: err.message }),
      );
    },
  });
  const notify = tracing.notify(
    createNotifyWebhook({
      repo,
      pools,
      secrets,
      logger,
      timeoutMs: config.webhooks.timeoutMs,
      allowPrivate: config.webhooks.allowPrivate,
    }),
  );
  const delivery = startWorker(
    config,
    DELIVERY_QUEUE,
    gateByOrg(
      deliveryProcessor(deliver, {
        logger,
        metrics,
        outageBackoffMs: config.delivery.backoffMs,
        maxPostponements: config.delivery.maxPostponements,
      }),
      {
        slots: deps.orgSlots.deliveries,
        // The org's override, else the default; read through the registry (cached, dropped on every org change).
        limitOf: async (orgId) => (await deps.registry.get(orgId))?.deliveryConcurrency ?? config.delivery.orgConcurrency,
        promote: (jobId) => deps.deliveryQueue.backend.promote(jobId),
        stateOf: (jobId) => deps.deliveryQueue.getJobState(jobId),
        leaseMs: config.delivery.lockMs,
        maxParkMs: config.orgParkMaxMs,
        logger,
        onParked: () => metrics.jobsParked.inc({ queue: DELIVERY_QUEUE }),
      },
    ),
    {
      concurrency: config.delivery.concurrency,
      logger,
      metrics,
    },
  );
  const webhooks = startWorker(
    config,
    WEBHOOK_QUEUE,
    // A slow or dead endpoint holds at most ORG_WEBHOOK_CONCURRENCY of the webhook slots, never all of them.
    gateByOrg(webhookProcessor(notify), {
      slots: deps.orgSlots.webhooks,
      limitOf: () => Promise.resolve(config.webhooks.orgConcurrency),
      leaseMs: config.delivery.lockMs,
      promote: (jobId) => deps.webhookQueue.backend.promote(jobId),
      stateOf: (jobId) => deps.webhookQueue.getJobState(jobId),
      maxParkMs: config.orgParkMaxMs,
      logger,
      onParked: () => metrics.jobsParked.inc({ queue: WEBHOOK_QUEUE }),
    }),
    {
      concurrency: config.webhooks.concurrency,
      logger,
      metrics,
    },
  );
  const reconciler = createReconciler({
    repo,
    servers: deps.servers,
    queue: deps.deliveryQueue,
    redis: deps.redis,
    prefix: config.queuePrefix,
    logger,
    metrics,
    afterMs: config.reconcile.afterMs,
    intervalMs: config.reconcile.intervalMs,
  });
  reconciler.start();
  return {
    delivery,
    webhooks,
    reconciler,
    async close(deadlineMs) {
      await Promise.all([reconciler.stop(), delivery.close(deadlineMs), webhooks.close(deadlineMs)]);
    },
  };
}
