/** Composition root: builds every client and service from a Config; close() releases them all. */
import type { Sequelize } from 'sequelize';
import type { Config } from '../config/config.js';
import type { Queue } from 'bullmq';
import { createLedger, type Ledger } from './orgs/data-access/ledger.js';
import type { Gateway } from './messages/gateway/gateway.js';
import { createRateLimits, redisLimiters, type RateLimits } from './platform/rate-limits/rate-limits.js';
import { createMetrics, type Metrics } from './platform/metrics/metrics.js';
import { createGateway } from './messages/gateway/create-gateway.js';
import { createMessageService, type MessageService } from './messages/domain/messages.service.js';
import { createFairShare, type FairShare } from './platform/queue/fair-share.js';
import { createOrgPermits, type OrgPermits } from './platform/queue/org-permits.js';
import {
  createDeliveryEnqueuer,
  createDeliveryQueue,
  createWebhookQueue,
  DELIVERY_QUEUE,
  WEBHOOK_QUEUE,
  type DeliveryJob,
  type WebhookJob,
} from './platform/queue/queues.js';
import { createSequelize } from './platform/db/sequelize.js';
import { createDeliveryLoad, type DeliveryLoadReader } from './messages/domain/delivery-load.js';
import { createLogger, type Logger } from './platform/lib/logger.js';
import { createSecretBox, type SecretBox } from './platform/lib/secrets.js';
import { createOrgEvents, type OrgEvents } from './orgs/domain/org-events.js';
import { createOrgRegistry, type OrgRegistry } from './orgs/domain/org-registry.js';
import { createOrgChangeLog } from './orgs/data-access/org-change-log.js';
import { createOrgRepository, type OrgRepository } from './orgs/data-access/org.repository.js';
import { createOrgService, type OrgService } from './orgs/domain/orgs.service.js';
import { createTenantConnections } from './platform/tenant-connections/tenant-connections.js';
import { createTenantDbs, type TenantDbs } from './orgs/domain/tenant-dbs.js';
import { createRedis, type RedisClient } from './platform/lib/redis.js';
import { createProvisioner, type ProvisionerDeps, type Provisioner } from './orgs/domain/provisioner.js';
import { createServerRegistry, type ServerRegistry } from './orgs/domain/server-registry.js';
import { createTenantMover, type MoveStep, type TenantMover } from './orgs/domain/tenant-mover.js';
import { createTenantPool, type TenantPool } from './orgs/domain/tenant-pool.js';
import { createTenantMigrations, type TenantMigrations } from './orgs/domain/tenant-migrations.js';
import { createFleetMigrations, type FleetMigrations } from './orgs/domain/fleet-migrations.js';
import { createRolloutRepository } from './orgs/data-access/rollouts.repository.js';
import { createSchemaVersions, type SchemaVersions } from './orgs/data-access/schema-versions.js';
import { createTenantBackups, type TenantBackups } from './orgs/domain/tenant-backups.js';
import { createDirectoryStore } from './platform/storage/blob-store.js';
import { markClonedUnsent } from './messages/data-access/messages.repository.js';

export interface Deps {
  config: Config;
  logger: Logger;
  sharedDb: Sequelize;
  secrets: SecretBox;
  redis: RedisClient;
  repo: OrgRepository;
  ledger: Ledger;
  servers: ServerRegistry;
  events: OrgEvents;
  registry: OrgRegistry;
  /** Orgs' tenant databases over this process's tenant connections (instances and per-server connection budgets). */
  tenantDbs: TenantDbs;
  provisioner: Provisioner;
  orgs: OrgService;
  migrations: TenantMigrations;
  /** Each tenant database's schema version, recorded in the shared DB. */
  versions: SchemaVersions;
  /** Fleet schema rollouts, fleet status and drift (bin/tenant migrate, rollout, status, doctor). */
  fleet: FleetMigrations;
  mover: TenantMover;
  /** The warm pool of tenants provisioned ahead (started by API processes: src/app/run.ts). */
  pool: TenantPool;
  /** Backups and restores of tenant databases (BACKUP_DIR), and clones. */
  backups: TenantBackups;
  deliveryQueue: Queue<DeliveryJob>;
  webhookQueue: Queue<WebhookJob>;
  messages: MessageService;
  /** Fair-share priorities of this process's enqueues, per queue (src/platform/queue/fair-share.ts). */
  fairShare: { deliveries: FairShare; webhooks: FairShare };
  /** Per-org concurrency of each queue's jobs across every worker (src/platform/queue/org-permits.ts). */
  orgPermits: { deliveries: OrgPermits; webhooks: OrgPermits };
  /** Per-org delivery load for operators (GET /orgs/:id/delivery, bin/tenant top and limits). */
  deliveryLoad: DeliveryLoadReader;
  limits: RateLimits;
  metrics: Metrics;
  gateway: Gateway;
  /** Releases everything; past `deadlineMs`, tenant connections are closed even under running queries. */
  close(deadlineMs?: number): Promise<void>;
}

export interface DepsOptions {
  logger?: Logger;
  /**
   * The kind of process: on every line of the logger made here (not of a given `logger`), and who reports the queue
   * gauges: with QUEUE_METRICS=auto every process but `api` does.
   */
  role?: 'all' | 'api' | 'worker' | 'cli';
  /** Subscribe to org events (API and workers do; the CLI only publishes). */
  subscribe?: boolean;
  /** Test seam for provisioning (see ProvisionerDeps.beforeStep). */
  beforeProvisioningStep?: ProvisionerDeps['beforeStep'];
  /** Test seam for moves (see TenantMoverDeps.beforeStep). */
  beforeMoveStep?: (step: MoveStep, orgId: number) => void | Promise<void>;
}

/** Builds the dependencies. Opens no connection until first used, except the Redis subscriber. */
export function createDeps(config: Config, opts: DepsOptions = {}): Deps {
  // Pretty lines for a developer at a terminal; JSON everywhere else (and always in production).
  const logger =
    opts.logger ??
    createLogger({ level: config.logLevel, role: opts.role, pretty: Boolean(process.stdout.isTTY) && config.nodeEnv !== 'production' });
  const sharedDb = createSequelize({ ...config.db, database: config.db.name, poolMax: config.db.poolMax, connectTimeoutMs: 3000 });
  const secrets = createSecretBox(config.secretKey);
  // Fail-fast client (no offline queue) for readiness and rate limits: a Redis outage answers at once.
  const redis = createRedis(config, 'command');
  redis.on('error', (err: Error) => logger.debug('redis error', { err: err.message }));
  const repo = createOrgRepository(sharedDb);
  const ledger = createLedger(sharedDb);
  const servers = createServerRegistry({ sharedDb, secrets, config, logger });
  // Below 100 ms the heartbeat cannot tell a lost feed within the TTL: entries then live the TTL only.
  const feedKeeps = config.orgCacheTtlMs >= 100;
  const events = createOrgEvents({
    redis: config,
    prefix: config.queuePrefix,
    logger,
    subscribe: opts.subscribe,
    // A change missed by a lost feed must not outlive ORG_CACHE_TTL_MS: lost within half of it, checked 4 times per TTL.
    heartbeatMs: Math.min(1000, Math.max(25, config.orgCacheTtlMs / 4)),
    lostAfterMs: Math.max(50, config.orgCacheTtlMs / 2),
    republishForMs: config.orgCacheMaxAgeMs,
    // Changes that could not be published, read with each heartbeat where entries may outlive the TTL.
    log: createOrgChangeLog(sharedDb),
    logReadMs: feedKeeps ? undefined : 0,
    logWindowMs: Math.max(config.orgCacheTtlMs, config.orgCacheMaxAgeMs),
  });
  const registry = createOrgRegistry({
    repo,
    ttlMs: config.orgCacheTtlMs,
    maxAgeMs: feedKeeps ? config.orgCacheMaxAgeMs : 0,
    feedLive: () => events.live(),
    logger,
  });
  events.onLost(() => registry.invalidateAll());
  const tenantDbs = createTenantDbs(createTenantConnections({ config, endpoint: (id) => servers.endpoint(id), secrets, logger }));
  events.onChange(({ orgId, reason }) => {
    registry.invalidate(orgId);
    // A pool whose credentials or server changed is replaced on its next use (the cache compares them); only a
    // dropped tenant's pool must be closed now.
    if (reason === 'dropped') tenantDbs.evict(orgId);
  });
  const versions = createSchemaVersions(sharedDb);
  const provisioner = createProvisioner({
    config,
    repo,
    servers,
    ledger,
    secrets,
    logger,
    versions,
    beforeStep: opts.beforeProvisioningStep,
  });
  const migrations = createTenantMigrations({ config, repo, servers, versions });
  const fleet = createFleetMigrations({ config, sharedDb, servers, versions, rollouts: createRolloutRepository(sharedDb), logger });
  const mover = createTenantMover({ config, repo, servers, provisioner, events, logger, beforeStep: opts.beforeMoveStep });
  const pool = createTenantPool({ config, repo, ledger, servers, provisioner, logger });
  const backups = createTenantBackups({
    config,
    repo,
    servers,
    provisioner,
    mover,
    events,
    secrets,
    store: createDirectoryStore(config.backupDir),
    logger,
    onCloned: markClonedUnsent,
  });
  const orgs = createOrgService({
    repo,
    ledger,
    provisioner,
    pool,
    moves: mover,
    events,
    secrets,
    webhookAllowPrivate: config.webhooks.allowPrivate,
  });
  const delivery = createDeliveryQueue(config);
  const deliveryQueue = delivery.queue;
  const webhook = createWebhookQueue(config);
  const webhookQueue = webhook.queue;
  const fairShare = {
    deliveries: createFairShare({ halfLifeMs: config.fairShareHalfLifeMs }),
    webhooks: createFairShare({ halfLifeMs: config.fairShareHalfLifeMs }),
  };
  // A running job renews its lease; a crashed worker's lapses after the job lock, when BullMQ hands the job on anyway.
  const orgPermits = {
    deliveries: createOrgPermits({ redis, prefix: config.queuePrefix, queue: DELIVERY_QUEUE, leaseMs: config.delivery.lockMs }),
    webhooks: createOrgPermits({ redis, prefix: config.queuePrefix, queue: WEBHOOK_QUEUE, leaseMs: config.delivery.lockMs }),
  };
  const deliveryLoad = createDeliveryLoad({
    tenantDbs,
    orgPermits,
    defaults: { deliveryConcurrency: config.delivery.orgConcurrency, webhookConcurrency: config.webhooks.orgConcurrency },
  });
  const messages = createMessageService({
    repo,
    tenantDbs,
    queue: deliveryQueue,
    enqueue: createDeliveryEnqueuer(delivery),
    fairShare: fairShare.deliveries,
    logger,
    idempotencyTtlMs: config.idempotencyKeyTtlSec * 1000,
  });
  // Every process reads the same counts from Redis: by default only workers (and all-in-one) report them, not the API.
  const queueMetrics = config.queueMetrics === 'on' || (config.queueMetrics === 'auto' && opts.role !== 'api');
  const metrics = createMetrics({
    tenantConnections: tenantDbs,
    orgCache: registry,
    orgFeed: events,
    queues: queueMetrics ? [deliveryQueue, webhookQueue] : [],
    orgPermits: queueMetrics
      ? [
          { queue: DELIVERY_QUEUE, permits: orgPermits.deliveries },
          { queue: WEBHOOK_QUEUE, permits: orgPermits.webhooks },
        ]
      : [],
    ...(config.warmPool.size > 0 ? { warmPool: pool } : {}),
  });
  const limits = createRateLimits({
    makeLimiter: redisLimiters(redis, config.queuePrefix),
    defaults: config.rateLimit,
    authFailures: config.authFailureLimit,
  });
  const gateway = createGateway(config);

  let closing: Promise<void> | undefined;
  return {
    config,
    logger,
    sharedDb,
    secrets,
    redis,
    repo,
    ledger,
    servers,
    events,
    registry,
    tenantDbs,
    provisioner,
    orgs,
    migrations,
    versions,
    fleet,
    mover,
    pool,
    backups,
    deliveryQueue,
    webhookQueue,
    messages,
    fairShare,
    orgPermits,
    deliveryLoad,
    gateway,
    limits,
    metrics,
    close(deadlineMs) {
      closing ??= (async () => {
        await pool.stop();
        await tenantDbs.close(deadlineMs);
        await Promise.allSettled([servers.close(), events.close(), sharedDb.close(), delivery.close(), webhook.close(), gateway.close?.()]);
        redis.disconnect();
      })();
      return closing;
    },
  };
}
