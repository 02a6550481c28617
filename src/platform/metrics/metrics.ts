/**
 * Prometheus metrics (prom-client), one registry per deps so tests can build several apps side by side.
 * Counters that other modules already keep (pool cache, org cache) are read at scrape time.
 */
import type { Queue } from 'bullmq';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { OrgPermits } from '../queue/org-permits.js';
import type { TenantConnectionsStats } from '../tenant-connections/tenant-connections.js';
import { withTimeout } from '../lib/timeout.js';

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  jobsCompleted: Counter<'queue'>;
  jobsFailed: Counter<'queue'>;
  creditsDebited: Counter;
  creditsRefunded: Counter;
  /** A delivery run's fenced write missed: another run had taken the message over or finished it (by step: claim, fail, requeue, sent). */
  fenceLost: Counter<'step'>;
  deliveryPostponed: Counter;
  postponementsExhausted: Counter;
  /** Jobs held back because their org had its cap of jobs running (by queue). */
  jobsParked: Counter<'queue'>;
  reconcilerRequeued: Counter;
  reconcilerLastSweep: Gauge;
  /** Messages the provider accepted after they were FAILED, turned SENT (by whether they could be charged again). */
  lateAcceptances: Counter<'outcome'>;
  /** FAILED messages the reconciler found with a settlement left undone (a refund, a late acceptance). */
  reconcilerRepairs: Counter;
  /** Rows the reconciler could not give a job to in a sweep (it goes on with the others). */
  reconcilerEnqueueFailures: Counter;
}

/** How many of the busiest orgs the per-org gauges show (bounded label cardinality with any number of tenants). */
export const BUSIEST_ORGS = 10;

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'] as const;

/** A counter whose value is read from a running total at scrape time. */
function counterFrom(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

export function createMetrics(deps: {
  /** The tenant connections' counters (instances and per-server connections), read at scrape time. */
  tenantConnections: { stats(): TenantConnectionsStats };
  /** The org and API-key cache's counters. */
  orgCache: { stats(): { hits: number; misses: number } };
  /** The org change feed (org-events.ts): whether it is live now, and its counters. */
  orgFeed?: { live(): boolean; stats(): { unpublished: number; unlogged: number; fromLog: number; logReadFailures: number } };
  queues: Queue[];
  /** Per-org permits of each queue, for the busiest-org gauges (reported where the queue gauges are). */
  orgPermits?: { queue: string; permits: OrgPermits }[];
  /** The warm pool's tenants per server and state (read from the shared DB at scrape time). */
  warmPool?: { state(): Promise<{ server: string; ready: number; making: number; failed: number }[]> };
}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const { tenantConnections, orgCache } = deps;
  const pools = tenantConnections;

  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'tenant_pools_open',
    help: 'Tenant DB pools open (LRU entries)',
    registers: [registry],
    collect() {
      this.set(pools.stats().open);
    },
  });
  new Gauge({
    name: 'tenant_pools_closing',
    help: 'Tenant DB pools evicted and still closing',
    registers: [registry],
    collect() {
      this.set(pools.stats().closing);
    },
  });
  new Gauge({
    name: 'tenant_pool_leases',
    help: 'Requests and jobs currently holding a tenant pool',
    registers: [registry],
    collect() {
      this.set(pools.stats().leased);
    },
  });
  new Gauge({
    name: 'tenant_db_connections',
    help: 'Physical connections open to tenant DB servers (at most TENANT_CONNECTIONS_MAX per server)',
    registers: [registry],
    collect() {
      this.set(pools.stats().connections);
    },
  });
  new Gauge({
    name: 'tenant_db_connections_in_use',
    help: 'Tenant DB connections running a query',
    registers: [registry],
    collect() {
      this.set(pools.stats().connectionsInUse);
    },
  });
  new Gauge({
    name: 'tenant_db_connection_waiters',
    help: 'Tenant requests and jobs waiting for a connection of their server budget',
    registers: [registry],
    collect() {
      this.set(pools.stats().connectionWaits);
    },
  });
  counterFrom(
    registry,
    'tenant_db_connection_switches_total',
    'Tenant connections switched to another tenant (COM_CHANGE_USER)',
    () => pools.stats().switches,
  );
  counterFrom(
    registry,
    'tenant_db_connection_switches_pipelined_total',
    "Switches whose session's first statement (a read) left in one write with the switch's last packet (no round trip of its own)",
    () => pools.stats().switchesPipelined,
  );
  counterFrom(
    registry,
    'tenant_db_connection_switches_behind_total',
    "Switches that left in one write with the previous tenant's last statement on the session, while another tenant waited for a connection (no write of their own)",
    () => pools.stats().switchesBehind,
  );
  counterFrom(
    registry,
    'tenant_session_inits_total',
    'Session inits run on a tenant connection just opened or switched (its account or the server does not set the session)',
    () => pools.stats().sessionInits,
  );
  counterFrom(
    registry,
    'tenant_session_inits_skipped_total',
    'Tenant connections opened or switched that needed no session init (the account sets the statement limit, the server runs in UTC)',
    () => pools.stats().sessionInitsSkipped,
  );
  counterFrom(
    registry,
    'tenant_db_connection_timeouts_total',
    'Waits for a tenant connection that ran past TENANT_ACQUIRE_TIMEOUT_MS',
    () => pools.stats().connectionTimeouts,
  );
  counterFrom(registry, 'tenant_pool_cache_hits_total', 'Tenant pool cache hits', () => pools.stats().hits);
  counterFrom(registry, 'tenant_pool_cache_misses_total', 'Tenant pool cache misses (a pool was opened)', () => pools.stats().misses);
  counterFrom(
    registry,
    'tenant_pool_cache_evictions_total',
    'Tenant pools closed (LRU, idle, or org changed)',
    () => pools.stats().evictions,
  );
  counterFrom(registry, 'tenant_pool_failures_total', 'Tenant DB pools that could not connect', () => pools.stats().failures);
  counterFrom(registry, 'org_cache_hits_total', 'Org and API-key cache hits', () => orgCache.stats().hits);
  counterFrom(registry, 'org_cache_misses_total', 'Org and API-key cache misses', () => orgCache.stats().misses);
  const { orgFeed } = deps;
  if (orgFeed) {
    new Gauge({
      name: 'org_change_feed_live',
      help: '1 while the org change feed is live (cached orgs and keys then stay ORG_CACHE_MAX_AGE_MS), 0 otherwise',
      registers: [registry],
      collect() {
        this.set(orgFeed.live() ? 1 : 0);
      },
    });
    counterFrom(
      registry,
      'org_changes_unpublished_total',
      'Org changes this process made that Redis did not take (written to the shared DB change log instead)',
      () => orgFeed.stats().unpublished,
    );
    counterFrom(
      registry,
      'org_changes_unlogged_total',
      'Org changes this process could neither publish nor log: other processes see them within ORG_CACHE_MAX_AGE_MS',
      () => orgFeed.stats().unlogged,
    );
    counterFrom(
      registry,
      'org_changes_from_log_total',
      "Org changes this process took from the shared DB change log (another process's publish had failed)",
      () => orgFeed.stats().fromLog,
    );
    counterFrom(
      registry,
      'org_change_log_read_failures_total',
      'Reads of the shared DB change log that failed or took too long (tried again at the next heartbeat)',
      () => orgFeed.stats().logReadFailures,
    );
  }
  // With no queues (QUEUE_METRICS off for this process) the series is not registered at all, rather than left empty.
  new Gauge({
    name: 'queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'] as const,
    registers: deps.queues.length ? [registry] : [],
    async collect() {
      this.reset();
      for (const q of deps.queues) {
        // Bounded: while Redis is unreachable BullMQ waits for it, and the scrape would hang with it.
        const counts = await withTimeout(q.getJobCounts(...JOB_STATES), 1000).catch(() => undefined);
        if (counts) for (const state of JOB_STATES) this.set({ queue: q.name, state }, counts[state] ?? 0);
      }
    },
  });
  const warmPool = deps.warmPool;
  new Gauge({
    name: 'tenant_warm_pool',
    help: 'Warm-pool tenants per database server: ready to be claimed, being provisioned, failed',
    labelNames: ['server', 'state'] as const,
    registers: warmPool ? [registry] : [],
    async collect() {
      this.reset();
      for (const s of (await withTimeout(warmPool!.state(), 1000).catch(() => undefined)) ?? [])
        for (const state of ['ready', 'making', 'failed'] as const) this.set({ server: s.server, state }, s[state]);
    },
  });
  // The busiest orgs of each queue, from the per-org permits in Redis (every worker process's jobs).
  const orgPermits = deps.orgPermits ?? [];
  const busiest = new Map<string, Promise<Awaited<ReturnType<OrgPermits['busiest']>> | undefined>>();
  const busiestOf = (queue: string, permits: OrgPermits) => {
    // Both gauges of one scrape share one read.
    let read = busiest.get(queue);
    if (!read) {
      read = withTimeout(permits.busiest(BUSIEST_ORGS), 1000).catch(() => undefined);
      busiest.set(queue, read);
      void read.finally(() => busiest.delete(queue));
    }
    return read;
  };
  for (const [name, field, help] of [
    ['org_jobs_in_flight', 'inFlight', 'Jobs running now for each of the busiest orgs (at most 10 orgs per queue)'],
    ['org_jobs_parked', 'parked', 'Jobs held back by their org’s concurrency cap, for each of the busiest orgs'],
  ] as const) {
    new Gauge({
      name,
      help,
      labelNames: ['queue', 'org_id'] as const,
      registers: orgPermits.length ? [registry] : [],
      async collect() {
        this.reset();
        for (const { queue, permits } of orgPermits) {
          for (const load of (await busiestOf(queue, permits)) ?? []) this.set({ queue, org_id: String(load.orgId) }, load[field]);
        }
      },
    });
  }
  const jobsParked = new Counter({
    name: 'jobs_parked_total',
    help: 'Jobs held back in this process because their org had its cap of jobs running',
    labelNames: ['queue'] as const,
    registers: [registry],
  });
  const jobsCompleted = new Counter({
    name: 'jobs_completed_total',
    help: 'Jobs completed by this process',
    labelNames: ['queue'] as const,
    registers: [registry],
  });
  const jobsFailed = new Counter({
    name: 'jobs_failed_total',
    help: 'Job attempts that failed in this process',
    labelNames: ['queue'] as const,
    registers: [registry],
  });
  const creditsDebited = new Counter({
    name: 'credits_debited_total',
    help: 'Credits debited for messages by this process',
    registers: [registry],
  });
  const creditsRefunded = new Counter({
    name: 'credits_refunded_total',
    help: 'Credits refunded for failed messages by this process',
    registers: [registry],
  });
  const fenceLost = new Counter({
    name: 'delivery_fence_lost_total',
    help: 'Delivery writes that missed their fence because another run held the message (by step)',
    labelNames: ['step'] as const,
    registers: [registry],
  });
  const deliveryPostponed = new Counter({
    name: 'delivery_postponed_total',
    help: 'Deliveries postponed by an infrastructure error (database, pool, Redis, lock, timeout)',
    registers: [registry],
  });
  const postponementsExhausted = new Counter({
    name: 'delivery_postponements_exhausted_total',
    help: 'Deliveries given back to the reconciler after DELIVERY_MAX_POSTPONEMENTS postponements (alert on any)',
    registers: [registry],
  });
  const reconcilerRequeued = new Counter({
    name: 'reconciler_requeued_total',
    help: 'QUEUED/SENDING messages with no live job that the reconciler enqueued again',
    registers: [registry],
  });
  const lateAcceptances = new Counter({
    name: 'delivery_late_acceptances_total',
    help: 'Messages the provider accepted after they were FAILED, turned SENT; outcome "uncharged" when the balance could not cover the charge again (alert on any)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const reconcilerRepairs = new Counter({
    name: 'reconciler_repairs_total',
    help: 'FAILED messages the reconciler found with a refund or a late acceptance left undone, and gave a job to finish it',
    registers: [registry],
  });
  const reconcilerEnqueueFailures = new Counter({
    name: 'reconciler_enqueue_failures_total',
    help: 'Rows the reconciler could not give a job to (the sweep goes on with the others; retried at the next sweep)',
    registers: [registry],
  });
  const reconcilerLastSweep = new Gauge({
    name: 'reconciler_last_sweep_timestamp_seconds',
    help: 'When this process last finished a reconciler sweep (Unix seconds)',
    registers: [registry],
  });
  return {
    registry,
    httpDuration,
    jobsCompleted,
    jobsFailed,
    creditsDebited,
    creditsRefunded,
    fenceLost,
    deliveryPostponed,
    postponementsExhausted,
    jobsParked,
    reconcilerRequeued,
    reconcilerLastSweep,
    lateAcceptances,
    reconcilerRepairs,
    reconcilerEnqueueFailures,
  };
}
