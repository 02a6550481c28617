/** Starts every worker of a worker process: deliveries and status webhooks (BullMQ adapters over the use cases), and the reconciler. */
import type { Config } from '../../../../config/config.js';
import type { Queue } from 'bullmq';
import type {
  Ledger,
  OrgEvents,
  OrgRegistry,
  OrgRepository,
  OrgService,
  ServerRegistry,
  TenantBackups,
  TenantDbs,
} from '../../../orgs/index.js';
import { MAX_MESSAGE_COST } from '../../domain/channels/index.js';
import type { Logger } from '../../../platform/lib/logger.js';
import type { RedisClient } from '../../../platform/lib/redis.js';
import type { SecretBox } from '../../../platform/lib/secrets.js';
import type { Metrics } from '../../../platform/metrics/metrics.js';
import type { FairShare } from '../../../platform/queue/fair-share.js';
import type { OrgPermits } from '../../../platform/queue/org-permits.js';
import type { Gateway } from '../../gateway/gateway.js';
import { createDeliverMessage, type DeliveryOutcome } from '../../domain/deliver-message.js';
import { createReconciler, type Reconciler } from '../../domain/reconciler.js';
import { DELIVERY_QUEUE, WEBHOOK_QUEUE, enqueueWebhook, type DeliveryJob, type WebhookJob } from '../../../platform/queue/queues.js';
import { createNotifyWebhook, type WebhookOutcome } from '../../domain/notify-webhook.js';
import { deliveryProcessor } from './delivery.processor.js';
import { gateByOrg } from '../../../platform/queue/worker-gate.js';
import { startWorker, type RunningWorker } from '../../../platform/queue/start-worker.js';
import { webhookProcessor } from './webhook.processor.js';
import { tracing } from '../../../platform/telemetry/tracing.js';

export interface Workers {
  reconciler: Reconciler;
  delivery: RunningWorker<DeliveryJob, DeliveryOutcome>;
  webhooks: RunningWorker<WebhookJob, WebhookOutcome>;
  /** Stops taking jobs and lets active ones finish (for at most `deadlineMs`). */
  close(deadlineMs?: number): Promise<void>;
}

/** What the workers use (the composition root's deps satisfy it). */
export interface WorkersDeps {
  registry: OrgRegistry;
  repo: OrgRepository;
  /** Publishes org changes (a balance that ran low) to every process. */
  events: Pick<OrgEvents, 'publish'>;
  servers: ServerRegistry;
  tenantDbs: TenantDbs;
  ledger: Ledger;
  gateway: Gateway;
  logger: Logger;
  secrets: SecretBox;
  metrics: Metrics;
  /** A fail-fast client (the reconciler's lock). */
  redis: RedisClient;
  deliveryQueue: Queue<DeliveryJob>;
  webhookQueue: Queue<WebhookJob>;
  fairShare: { webhooks: FairShare };
  orgPermits: { deliveries: OrgPermits; webhooks: OrgPermits };
  /** The purge of dropped tenants past their retention period, run by the reconciler's sweep. */
  orgs?: Pick<OrgService, 'purgeExpired'>;
  /** The old copies restores left behind past their grace period, dropped by the reconciler's sweep. */
  backups?: Pick<TenantBackups, 'dropRetiredCopies'>;
}

/** Starts the delivery and webhook workers over the given deps. */
export function startWorkers(config: Config, deps: WorkersDeps): Workers {
  const { repo, tenantDbs, ledger, gateway, logger, secrets, metrics } = deps;
  const deliver = createDeliverMessage({
    // The org through the registry: cached, and dropped at once by every change (suspend, move, credentials) that
    // is published; a round trip per message saved. A lost event is bounded by ORG_CACHE_TTL_MS.
    orgs: deps.registry,
    tenantDbs,
    ledger,
    gateway,
    logger,
    metrics,
    lowBalance: {
      below: MAX_MESSAGE_COST,
      notify: (orgId) =>
        void deps.events
          .publish({ orgId, reason: 'balance-low' })
          .catch((err: Error) => logger.warn('could not publish a low balance', { err: err.message })),
    },
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
  const notify = tracing.traced(
    'webhook.notify',
    createNotifyWebhook({
      repo,
      tenantDbs,
      secrets,
      logger,
      timeoutMs: config.webhooks.timeoutMs,
      allowPrivate: config.webhooks.allowPrivate,
    }),
    { of: (input) => ({ 'webhook.status': input.status }), result: (outcome) => ({ 'webhook.outcome': outcome }) },
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
        permits: deps.orgPermits.deliveries,
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
    // A slow or dead endpoint holds at most ORG_WEBHOOK_CONCURRENCY of the webhook permits, never all of them.
    gateByOrg(webhookProcessor(notify), {
      permits: deps.orgPermits.webhooks,
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
    ledger,
    prefix: config.queuePrefix,
    logger,
    metrics,
    afterMs: config.reconcile.afterMs,
    intervalMs: config.reconcile.intervalMs,
    lookbackMs: config.reconcile.lookbackMs,
    // Dropped tenants past TENANT_RETENTION_DAYS: their database, user and keys removed (one process, under the lock).
    // And the old copies restores left behind (their process died before dropping them).
    upkeep: async () => {
      await deps.orgs?.purgeExpired();
      await deps.backups?.dropRetiredCopies();
    },
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
