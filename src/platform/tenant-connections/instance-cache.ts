/**
 * The tenant instance cache: one instance per tenant DB (a cheap entry, a TenantDb, that holds no connection of its own:
 * it leases sessions from its server's connection budget), at most `maxOpen` of them at once, least-recently-used first
 * out. An instance is closed only when no request holds a lease on it, so no query is cut off; concurrent first
 * requests for one tenant share one initialisation.
 */
import { LRUCache } from 'lru-cache';
import { unavailable } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { TenantDbRef } from './tenant-db-ref.js';

export interface InstanceCacheStats {
  open: number;
  closing: number;
  leased: number;
  hits: number;
  misses: number;
  evictions: number;
  failures: number;
}

/** What the cache keeps per tenant: anything it can close once no lease holds it. */
export interface Closable {
  close(): Promise<void>;
}

export interface TenantInstanceCache<D extends Closable> {
  /** Runs fn with the tenant's pool leased; the pool stays open until fn settles. */
  withTenant<T>(tenant: TenantDbRef, fn: (db: D) => Promise<T>): Promise<T>;
  /** Closes the org's pool (once its leases are released), e.g. after its credentials changed. */
  evict(orgId: number): void;
  stats(): InstanceCacheStats;
  /** Closes every pool once its leases end; past `deadlineMs`, even under running queries. */
  close(deadlineMs?: number): Promise<void>;
}

interface Entry<D> {
  orgId: number;
  fingerprint: string;
  ready: Promise<D>;
  /** Set once ready resolves. */
  db?: D;
  leases: number;
  lastUsed: number;
  retired: boolean;
  /** Set once its pool is being closed. */
  shut: boolean;
}

export interface InstanceCacheOptions<D extends Closable> {
  maxOpen: number;
  /**
   * Entries unused this long are dropped; undefined: never for idleness (an instance that holds no connection costs
   * only its memory, which `maxOpen` bounds, and dropping it would only make its tenant's next request a miss).
   */
  idleMs?: number;
  acquireTimeoutMs: number;
  /** How long a tenant whose DB could not be reached answers 503 at once before we try again. */
  retryAfterMs: number;
  /** Opens (and checks) a pool for the org; its pool max is the per-tenant connection bound. */
  open(tenant: TenantDbRef): Promise<D>;
  logger: Logger;
}

/** The connection identity of an org: a change (rotated password, moved DB) means a new pool. */
const fingerprintOf = (t: TenantDbRef) => `${t.dbServerId}/${t.dbName}/${t.dbUser}/${t.dbPasswordEnc}`;

/** A bounded LRU of tenant instances, closed only once no lease holds them. */
export function createInstanceCache<D extends Closable>(opts: InstanceCacheOptions<D>): TenantInstanceCache<D> {
  // lru-cache, not a Map re-ordered by delete-and-set: V8 keeps a deleted entry in the key's bucket chain until a rehash,
  // so a hot tenant's lookups walked thousands of dead entries (24 µs per request at 10,000 tenants: bench:touch). Its
  // bound is never reached (acquire keeps entries + closing under maxOpen): eviction is ours, leases first.
  const entries = new LRUCache<number, Entry<D>>({ max: opts.maxOpen });
  const failedUntil = new Map<number, number>();
  const waiters = new Set<() => void>();
  const stats = { hits: 0, misses: 0, evictions: 0, failures: 0 };
  let closing = 0;
  let closed = false;

  const wake = () => {
    for (const w of [...waiters]) w();
  };

  const { idleMs } = opts;
  const sweeper =
    idleMs === undefined
      ? undefined
      : setInterval(
          () => {
            const cutoff = Date.now() - idleMs;
            for (const e of [...entries.values()]) if (e.leases === 0 && e.lastUsed < cutoff) retire(e);
          },
          Math.min(idleMs, 1000),
        );
  sweeper?.unref();

  /** The least recently used entry that no lease holds. */
  function firstUnleased(): Entry<D> | undefined {
    for (const e of entries.rvalues()) if (e?.leases === 0) return e;
    return undefined;
  }

  /** Takes an entry out of the LRU; it keeps its slot (counted in `closing`) until its last lease ends and it is closed. */
  function retire(e: Entry<D>, countEviction = true): void {
    if (e.retired) return;
    e.retired = true;
    if (entries.peek(e.orgId) === e) entries.delete(e.orgId);
    closing++;
    if (countEviction) stats.evictions++;
    if (e.leases === 0) shut(e);
  }

  /** Closes the entry's pool, once (a forced close at shutdown may come before its last lease ends). */
  function shut(e: Entry<D>): void {
    if (e.shut) return;
    e.shut = true;
    e.ready
      .then((db) => db.close())
      .catch((err: Error) => opts.logger.debug('tenant pool close failed', { orgId: e.orgId, err: err.message }))
      .finally(() => {
        closing--;
        wake();
      });
  }

  function waitForSlot(deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(
        () => {
          waiters.delete(done);
          reject(unavailable('TENANT_CAPACITY', 'all tenant connection slots are busy; try again', 1000));
        },
        Math.max(0, deadline - Date.now()),
      );
      waiters.add(done);
    });
  }

  /** The org's entry for its current identity, leased (a hit); undefined if there is none. */
  function reuse(org: TenantDbRef): Entry<D> | undefined {
    const existing = entries.get(org.id); // now the most recently used
    if (!existing || existing.fingerprint !== fingerprintOf(org)) return undefined;
    stats.hits++;
    existing.leases++;
    return existing;
  }

  /** A hit when nothing stands in the way (shutdown, a tenant failing lately); else undefined: then acquire(). */
  const hit = (org: TenantDbRef) => (closed || failedUntil.size > 0 ? undefined : reuse(org));

  async function acquire(org: TenantDbRef): Promise<Entry<D>> {
    const deadline = Date.now() + opts.acquireTimeoutMs;
    for (;;) {
      if (closed) throw unavailable('SHUTTING_DOWN', 'the server is shutting down', 1000);
      const failed = failedUntil.get(org.id);
      if (failed !== undefined) {
        if (failed > Date.now())
          throw unavailable('TENANT_DB_UNAVAILABLE', 'the organisation database is unavailable', failed - Date.now());
        failedUntil.delete(org.id);
      }
      const reused = reuse(org);
      if (reused) return reused;
      const stale = entries.peek(org.id); // another identity's (a rotated password, a move)
      if (stale) retire(stale);
      if (entries.size + closing < opts.maxOpen) return openEntry(org);
      // A pool already closing will free a slot that no waiter has claimed yet: wait for it rather than close another.
      const victim = closing > waiters.size ? undefined : firstUnleased();
      if (victim) retire(victim);
      else await waitForSlot(deadline);
    }
  }

  function openEntry(org: TenantDbRef): Entry<D> {
    stats.misses++;
    const entry: Entry<D> = {
      orgId: org.id,
      fingerprint: fingerprintOf(org),
      ready: opts.open(org),
      leases: 1,
      lastUsed: Date.now(),
      retired: false,
      shut: false,
    };
    entries.set(org.id, entry);
    entry.ready.then(
      (db) => (entry.db = db),
      () => undefined,
    );
    entry.ready.catch((err: Error) => {
      stats.failures++;
      opts.logger.warn('tenant database unreachable', { orgId: org.id, err: err.message });
      if (opts.retryAfterMs > 0) failedUntil.set(org.id, Date.now() + opts.retryAfterMs);
      // Through retire(), like any other entry: its slot is released once the waiting leases are released.
      retire(entry, false);
    });
    return entry;
  }

  function release(e: Entry<D>): void {
    e.leases--;
    e.lastUsed = Date.now();
    if (e.leases > 0) return;
    if (e.retired) shut(e);
    wake();
  }

  /** A miss, or a hit whose instance is still opening: waits for the instance, then runs the work. */
  async function withTenantSlow<T>(org: TenantDbRef, fn: (db: D) => Promise<T>, hitEntry: Entry<D> | undefined): Promise<T> {
    const entry = hitEntry ?? (await acquire(org));
    let db: D;
    try {
      db = entry.db ?? (await entry.ready);
    } catch (err) {
      release(entry);
      throw unavailable('TENANT_DB_UNAVAILABLE', 'the organisation database is unavailable', opts.retryAfterMs, err);
    }
    return runIn(entry, db, fn);
  }

  /** Runs the work on the entry's instance; the entry's lease is given back when it settles (or throws at once). */
  function runIn<T>(entry: Entry<D>, db: D, fn: (db: D) => Promise<T>): Promise<T> {
    let work: Promise<T>;
    try {
      work = fn(db);
    } catch (err: unknown) {
      release(entry);
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return work.then(
      (value) => {
        release(entry);
        return value;
      },
      (err: Error) => {
        release(entry);
        throw err;
      },
    );
  }

  return {
    withTenant(org, fn) {
      // A hit on an instance already open (the hot path) waits for nothing: the work's promise is the only one.
      const entry = hit(org);
      if (entry?.db) return runIn(entry, entry.db, fn);
      return withTenantSlow(org, fn, entry);
    },
    evict(orgId) {
      const e = entries.peek(orgId);
      if (e) retire(e);
      failedUntil.delete(orgId);
    },
    stats() {
      let leased = 0;
      for (const e of entries.values()) leased += e.leases;
      return { open: entries.size, closing, leased, ...stats };
    },
    async close(deadlineMs) {
      closed = true;
      clearInterval(sweeper);
      const all = [...entries.values()];
      all.forEach((e) => retire(e));
      // Past the deadline, pools still leased are closed under their queries (a shutdown that must end).
      const force =
        deadlineMs === undefined
          ? undefined
          : setTimeout(() => {
              for (const e of all) if (e.leases > 0) shut(e);
            }, deadlineMs);
      while (closing > 0)
        await new Promise<void>((resolve) => {
          waiters.add(function once() {
            waiters.delete(once);
            resolve();
          });
        });
      clearTimeout(force);
    },
  };
}
