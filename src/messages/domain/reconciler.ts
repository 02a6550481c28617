/**
 * The outbox reconciler. The tenant databases are the record of every message; Redis only holds work in flight. A
 * message row is written first and its job enqueued second, so a crash in between, a Redis that lost its data, or a
 * job given up after too many postponements leaves a QUEUED/SENDING row with no live job. Every RECONCILE_INTERVAL_MS
 * one worker process (a Redis lock) sweeps every tenant database for rows in those states untouched for
 * RECONCILE_AFTER_MS and enqueues them again under their own job id (the delivery is idempotent, so a row whose job
 * is in fact alive is left alone, and one enqueued twice is delivered once).
 *
 * It reads through each server's admin connection, many tenants per query (UNION ALL over the (status, updated_at)
 * index), so a sweep over 10,000 tenants costs a hundred queries per server and never churns the tenant pools.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { RedisClient } from '../../platform/lib/redis.js';
import type { Sequelize } from 'sequelize';
import { mapWithConcurrency } from '../../platform/lib/concurrency.js';
import { describeError } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { Metrics } from '../../platform/metrics/metrics.js';
import { ensureDeliveryJob, type DeliveryJob } from '../../platform/queue/queues.js';
import { findStale } from '../data-access/messages.repository.js';
import { type OrgRepository, type ProvisionedOrg, type ServerRegistry, isOperational } from '../../orgs/index.js';

/** Tenants per sweep query (one UNION ALL), and rows taken per tenant per sweep. */
const TENANTS_PER_QUERY = 100;
const ROWS_PER_TENANT = 1000;
const ENQUEUE_CONCURRENCY = 16;

export interface SweepResult {
  /** False when another process held the sweep lock. */
  swept: boolean;
  tenants: number;
  /** Rows found QUEUED/SENDING past the cut-off. */
  stale: number;
  /** Of those, the ones that had no live job and were enqueued again. */
  requeued: number;
  /** Tenants whose database could not be read this time. */
  failedTenants: number;
  ms: number;
}

export interface ReconcilerDeps {
  repo: Pick<OrgRepository, 'list'>;
  servers: Pick<ServerRegistry, 'admin'>;
  queue: Queue<DeliveryJob>;
  /** A fail-fast client for the lock. */
  redis: RedisClient;
  prefix: string;
  afterMs: number;
  intervalMs: number;
  logger: Logger;
  metrics?: Pick<Metrics, 'reconcilerRequeued' | 'reconcilerLastSweep'>;
}

export interface Reconciler {
  /** One sweep now (under the lock). */
  sweep(): Promise<SweepResult>;
  /** Sweeps every intervalMs until stop(). */
  start(): void;
  /** Stops the timer and waits for a sweep in progress. */
  stop(): Promise<void>;
}

/** Deletes the lock only if this process still holds it (one key: Cluster-safe). */
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export function createReconciler(deps: ReconcilerDeps): Reconciler {
  const { logger } = deps;
  const lockKey = `${deps.prefix}:reconciler:lock`;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = false;

  async function operationalOrgs(): Promise<ProvisionedOrg[]> {
    const all: ProvisionedOrg[] = [];
    for (let after = 0; ;) {
      const page = await deps.repo.list({ limit: 1000, after, statuses: ['ACTIVE', 'SUSPENDED'] });
      all.push(...page.filter(isOperational));
      if (page.length < 1000) return all;
      after = page[page.length - 1]!.id;
    }
  }

  const staleRows = (admin: Sequelize, orgs: ProvisionedOrg[], cutoff: Date) => findStale(admin, orgs, cutoff, ROWS_PER_TENANT);

  async function sweepLocked(started: number): Promise<SweepResult> {
    const cutoff = new Date(Date.now() - deps.afterMs);
    const orgs = await operationalOrgs();
    const byServer = new Map<number, ProvisionedOrg[]>();
    for (const o of orgs) {
      const list = byServer.get(o.dbServerId);
      if (list) list.push(o);
      else byServer.set(o.dbServerId, [o]);
    }
    const found: [number, number][] = [];
    let failedTenants = 0;
    for (const [serverId, tenants] of byServer) {
      let admin: Sequelize;
      try {
        admin = await deps.servers.admin(serverId);
      } catch (err) {
        failedTenants += tenants.length;
        logger.warn('reconciler: db server unreachable; its tenants wait for the next sweep', { serverId, err: describeError(err) });
        continue;
      }
      for (let i = 0; i < tenants.length; i += TENANTS_PER_QUERY) {
        const batch = tenants.slice(i, i + TENANTS_PER_QUERY);
        try {
          found.push(...(await staleRows(admin, batch, cutoff)));
        } catch {
          // One bad tenant (dropped meanwhile, being moved) must not hide the others: read them one by one.
          for (const o of batch) {
            try {
              found.push(...(await staleRows(admin, [o], cutoff)));
            } catch (err) {
              failedTenants++;
              logger.warn('reconciler: tenant database unreadable; it waits for the next sweep', { orgId: o.id, err: describeError(err) });
            }
          }
        }
      }
    }
    const outcomes = await mapWithConcurrency(found, ENQUEUE_CONCURRENCY, ([orgId, messageId]) =>
      ensureDeliveryJob(deps.queue, orgId, messageId),
    );
    const requeued = outcomes.filter((o) => o === 'added').length;
    if (requeued) {
      deps.metrics?.reconcilerRequeued.inc(requeued);
      logger.warn('reconciler: enqueued messages that had no live job', { requeued, stale: found.length });
    }
    deps.metrics?.reconcilerLastSweep.set(Date.now() / 1000);
    return { swept: true, tenants: orgs.length, stale: found.length, requeued, failedTenants, ms: Date.now() - started };
  }

  async function sweep(): Promise<SweepResult> {
    const started = Date.now();
    const token = randomUUID();
    // Held for at most two intervals: a process that dies mid-sweep blocks the others for that long at most.
    const got = await deps.redis.set(lockKey, token, 'PX', Math.max(deps.intervalMs * 2, 10_000), 'NX');
    if (got !== 'OK') return { swept: false, tenants: 0, stale: 0, requeued: 0, failedTenants: 0, ms: Date.now() - started };
    try {
      return await sweepLocked(started);
    } finally {
      await deps.redis.eval(RELEASE, 1, lockKey, token).catch(() => undefined);
    }
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      running = sweep()
        .catch((err: unknown) => logger.warn('reconciler sweep failed; retrying at the next interval', { err: describeError(err) }))
        .finally(schedule);
    }, deps.intervalMs);
    timer.unref();
  }

  return {
    sweep,
    start() {
      stopped = false;
      schedule();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
