/**
 * The outbox reconciler. The tenant databases are the record of every message; Redis only holds work in flight. A
 * message row is written first and its job enqueued second, so a crash in between, a Redis that lost its data, or a
 * job given up after too many postponements leaves a QUEUED/SENDING row with no live job. Every RECONCILE_INTERVAL_MS
 * one worker process (a Redis lock) sweeps every tenant database for rows in those states untouched for
 * RECONCILE_AFTER_MS and enqueues them again under their own job id (the delivery is idempotent, so a row whose job
 * is in fact alive is left alone, and one enqueued twice is delivered once).
 *
 * The same sweep repairs FAILED messages whose settlement was cut off once their job was gone: a debit with no refund
 * (the refund follows the FAILED write), or the provider's id on the row (a late acceptance not yet turned SENT and
 * charged). It finds them with an anti-join against the ledger (one query per page on the unique (org, reference)
 * key) and gives each its delivery job again, whose run finishes exactly what was left (deliver-message.ts:
 * finishFinal). FAILED rows are read from a Redis mark of the last clean sweep on (minus RECONCILE_AFTER_MS of
 * overlap), or RECONCILE_REPAIR_LOOKBACK_MS back without one.
 *
 * It reads through each server's admin connection, many tenants per query (UNION ALL over the (status, updated_at)
 * index), a page at a time (reconciler-scan.ts): a sweep over 10,000 tenants costs a hundred queries per server, never
 * churns the tenant pools, and holds one page of rows in memory however many a Redis loss left. A row whose job cannot
 * be enqueued is counted and logged, and the sweep goes on; it stops only when Redis is gone (its lock lost, or many
 * enqueues failing in a row).
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
import { ledgerKey, type Ledger, type OrgRepository, type ProvisionedOrg, type ServerRegistry, isOperational } from '../../orgs/index.js';
import { debitReference, refundReference } from './ledger-references.js';
import { nextPart, readPages, rowTime, type ScanPart, type ScanWindow, type ScannedRow } from '../data-access/reconciler-scan.js';

/** Tenants per sweep query (one UNION ALL of a stale and a FAILED page each), and rows per tenant per page. */
const TENANTS_PER_QUERY = 100;
const PAGE_ROWS = 500;
const ENQUEUE_CONCURRENCY = 16;
/** FAILED rows whose debit and refund one ledger query looks up. */
const LEDGER_ROWS_PER_QUERY = 500;
/** Enqueues failing one after another: Redis is gone, the sweep stops (a bad row or two never stop it). */
const FAILURES_IN_A_ROW_MAX = 50;
/** Enqueue failures logged one by one per sweep; the rest are counted. */
const FAILURES_LOGGED = 5;

export interface SweepResult {
  /** False when another process held the sweep lock. */
  swept: boolean;
  tenants: number;
  /** Rows found QUEUED/SENDING past the cut-off. */
  stale: number;
  /** Of those, the ones that had no live job and were enqueued again. */
  requeued: number;
  /** FAILED rows read (changed in the repair window). */
  failedChecked: number;
  /** Of those, the ones whose settlement was cut off (a debit without refund, a late acceptance): given a job. */
  repairs: number;
  /** Rows whose job could not be enqueued this time (the sweep went on; the next one tries again). */
  enqueueFailures: number;
  /** Tenants whose database could not be read this time. */
  failedTenants: number;
  /** The most rows held at once (one page of one query): bounded by tenantsPerQuery × 2 × pageRows. */
  maxRowsHeld: number;
  /** True when the sweep stopped early (its lock lost, Redis gone). */
  aborted: boolean;
  ms: number;
}

export interface ReconcilerDeps {
  repo: Pick<OrgRepository, 'list'>;
  servers: Pick<ServerRegistry, 'admin'>;
  queue: Queue<DeliveryJob>;
  /** A fail-fast client for the lock and the mark of the last sweep. */
  redis: RedisClient;
  /** The anti-join of the repairs: which debits and refunds exist. */
  ledger: Pick<Ledger, 'existing'>;
  prefix: string;
  afterMs: number;
  intervalMs: number;
  /** How far back FAILED rows are read when there is no mark of the last sweep (RECONCILE_REPAIR_LOOKBACK_MS). */
  lookbackMs?: number;
  logger: Logger;
  metrics?: Pick<Metrics, 'reconcilerRequeued' | 'reconcilerLastSweep' | 'reconcilerRepairs' | 'reconcilerEnqueueFailures'>;
  /**
   * Other upkeep run once per sweep by the process that holds the sweep's lock (the purge of dropped tenants past
   * their retention period); its failure is logged and tried again at the next sweep.
   */
  upkeep?: () => Promise<unknown>;
  /** Paging (tests, benchmarks): tenants per query and rows per tenant per page. */
  tenantsPerQuery?: number;
  pageRows?: number;
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
/** Extends the lock only if this process still holds it. */
const RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

export function createReconciler(deps: ReconcilerDeps): Reconciler {
  const { logger } = deps;
  const lockKey = `${deps.prefix}:reconciler:lock`;
  /** Every FAILED row changed before this time (ms) was checked by a clean sweep. */
  const markKey = `${deps.prefix}:reconciler:failed-checked-until`;
  const lockMs = Math.max(deps.intervalMs * 2, 10_000);
  const lookbackMs = deps.lookbackMs ?? 7 * 24 * 60 * 60_000;
  const tenantsPerQuery = deps.tenantsPerQuery ?? TENANTS_PER_QUERY;
  const pageRows = deps.pageRows ?? PAGE_ROWS;
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

  /** The start of the FAILED window: the last clean sweep's mark minus an overlap (clock skew), within the lookback. */
  async function repairWindowStart(now: number): Promise<Date> {
    const mark = Number(await deps.redis.get(markKey));
    const floor = now - lookbackMs;
    return new Date(Number.isFinite(mark) && mark > 0 ? Math.max(mark - deps.afterMs, floor) : floor);
  }

  /** The FAILED rows of a page whose settlement was cut off: the provider's id on the row, or a debit without refund. */
  async function needingRepair(rows: readonly ScannedRow[]): Promise<ScannedRow[]> {
    const unsure = rows.filter((r) => !r.accepted);
    const found = new Set<string>();
    for (let i = 0; i < unsure.length; i += LEDGER_ROWS_PER_QUERY) {
      const keys = unsure.slice(i, i + LEDGER_ROWS_PER_QUERY).flatMap((r) => [
        { orgId: r.orgId, reference: debitReference(r.id) },
        { orgId: r.orgId, reference: refundReference(r.id) },
      ]);
      for (const key of await deps.ledger.existing(keys)) found.add(key);
    }
    return rows.filter(
      (r) => r.accepted || (found.has(ledgerKey(r.orgId, debitReference(r.id))) && !found.has(ledgerKey(r.orgId, refundReference(r.id)))),
    );
  }

  async function sweepLocked(started: number, token: string): Promise<SweepResult> {
    const now = Date.now();
    const window: ScanWindow = { cutoff: new Date(now - deps.afterMs), from: await repairWindowStart(now) };
    const orgs = await operationalOrgs();
    const byServer = new Map<number, ProvisionedOrg[]>();
    for (const o of orgs) {
      const list = byServer.get(o.dbServerId);
      if (list) list.push(o);
      else byServer.set(o.dbServerId, [o]);
    }
    const result: SweepResult = {
      swept: true,
      tenants: orgs.length,
      stale: 0,
      requeued: 0,
      failedChecked: 0,
      repairs: 0,
      enqueueFailures: 0,
      failedTenants: 0,
      maxRowsHeld: 0,
      aborted: false,
      ms: 0,
    };
    /** The oldest FAILED row given a repair this sweep: the next sweep reads from there again, to see it settled. */
    let oldestRepair = Infinity;
    let failuresInARow = 0;

    /** Gives each row a live job; a failure is counted and logged, and the others go on. */
    async function ensureJobs(rows: readonly ScannedRow[]): Promise<number> {
      const outcomes = await mapWithConcurrency(
        rows,
        ENQUEUE_CONCURRENCY,
        async (r) => {
          try {
            const outcome = await ensureDeliveryJob(deps.queue, r.orgId, r.id);
            failuresInARow = 0;
            return outcome;
          } catch (err) {
            failuresInARow++;
            if (++result.enqueueFailures <= FAILURES_LOGGED)
              logger.warn('reconciler: could not give a message its job; the next sweep tries again', {
                orgId: r.orgId,
                messageId: r.id,
                err: describeError(err),
              });
            return 'failed' as const;
          }
        },
        () => failuresInARow >= FAILURES_IN_A_ROW_MAX,
      );
      if (failuresInARow >= FAILURES_IN_A_ROW_MAX) result.aborted = true;
      return outcomes.filter((o) => o === 'added').length;
    }

    /** One page of one query: parts that filled their page go back in line for their next one. */
    async function handlePages(pages: Map<ScanPart, ScannedRow[]>, line: ScanPart[]): Promise<void> {
      const stale: ScannedRow[] = [];
      const failed: ScannedRow[] = [];
      let held = 0;
      for (const [part, page] of pages) {
        held += page.length;
        (part.kind === 'stale' ? stale : failed).push(...page);
        const next = nextPart(part, page, pageRows);
        if (next) line.push(next);
      }
      result.maxRowsHeld = Math.max(result.maxRowsHeld, held);
      result.stale += stale.length;
      result.failedChecked += failed.length;
      const repairs = failed.length ? await needingRepair(failed) : [];
      result.repairs += repairs.length;
      for (const r of repairs) oldestRepair = Math.min(oldestRepair, rowTime(r));
      result.requeued += await ensureJobs(stale);
      const repaired = await ensureJobs(repairs);
      if (repaired) deps.metrics?.reconcilerRepairs.inc(repaired);
    }

    /** Reads the parts' pages; if the query fails, tenant by tenant, so one bad tenant never hides the others. */
    async function pagesOf(admin: Sequelize, parts: ScanPart[]): Promise<Map<ScanPart, ScannedRow[]>> {
      try {
        return await readPages(admin, parts, window, pageRows);
      } catch {
        const pages = new Map<ScanPart, ScannedRow[]>();
        for (const org of new Set(parts.map((p) => p.org))) {
          const own = parts.filter((p) => p.org === org);
          try {
            for (const [part, page] of await readPages(admin, own, window, pageRows)) pages.set(part, page);
          } catch (err) {
            result.failedTenants++;
            logger.warn('reconciler: tenant database unreadable; it waits for the next sweep', { orgId: org.id, err: describeError(err) });
          }
        }
        return pages;
      }
    }

    for (const [serverId, tenants] of byServer) {
      if (result.aborted) break;
      let admin: Sequelize;
      try {
        admin = await deps.servers.admin(serverId);
      } catch (err) {
        result.failedTenants += tenants.length;
        logger.warn('reconciler: db server unreachable; its tenants wait for the next sweep', { serverId, err: describeError(err) });
        continue;
      }
      const line: ScanPart[] = tenants.flatMap((org) => [
        { org, kind: 'stale' as const },
        { org, kind: 'failed' as const },
      ]);
      while (line.length && !result.aborted) {
        await handlePages(await pagesOf(admin, line.splice(0, tenantsPerQuery * 2)), line);
        // A long sweep keeps its lock; a lost one (expired, Redis gone) stops it: another process may sweep now.
        const renewed = await deps.redis.eval(RENEW, 1, lockKey, token, String(lockMs)).catch(() => 0);
        if (renewed !== 1) result.aborted = true;
      }
    }

    if (result.aborted)
      logger.warn('reconciler: sweep stopped early (its lock lost or Redis failing); the next one goes on', { ...result });
    if (result.enqueueFailures > FAILURES_LOGGED)
      logger.warn('reconciler: more messages could not be given their job', { enqueueFailures: result.enqueueFailures });
    if (result.requeued) {
      deps.metrics?.reconcilerRequeued.inc(result.requeued);
      logger.warn('reconciler: enqueued messages that had no live job', { requeued: result.requeued, stale: result.stale });
    }
    if (result.repairs)
      logger.warn('reconciler: FAILED messages with a settlement cut off were given a job to finish it', { repairs: result.repairs });
    if (result.enqueueFailures) deps.metrics?.reconcilerEnqueueFailures.inc(result.enqueueFailures);
    // A clean sweep moves the mark: FAILED rows changed before it are settled or have their repair under way (the next
    // sweep reads from the oldest of those again, and finds it settled).
    if (!result.aborted && result.failedTenants === 0 && result.enqueueFailures === 0) {
      await deps.redis.set(markKey, String(Math.min(window.cutoff.getTime(), oldestRepair))).catch(() => undefined);
    }
    deps.metrics?.reconcilerLastSweep.set(Date.now() / 1000);
    return { ...result, ms: Date.now() - started };
  }

  async function sweep(): Promise<SweepResult> {
    const started = Date.now();
    const token = randomUUID();
    // Held for at most two intervals: a process that dies mid-sweep blocks the others for that long at most.
    const got = await deps.redis.set(lockKey, token, 'PX', lockMs, 'NX');
    if (got !== 'OK') {
      return {
        swept: false,
        tenants: 0,
        stale: 0,
        requeued: 0,
        failedChecked: 0,
        repairs: 0,
        enqueueFailures: 0,
        failedTenants: 0,
        maxRowsHeld: 0,
        aborted: false,
        ms: Date.now() - started,
      };
    }
    try {
      const result = await sweepLocked(started, token);
      await deps
        .upkeep?.()
        .catch((err: unknown) => logger.warn('reconciler: upkeep failed; retried at the next sweep', { err: describeError(err) }));
      return result;
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
