/**
 * Cached org and API-key lookups for the hot path (lru-cache): bounded size, negative caching, single flight, and
 * explicit invalidation on org events. An entry lives ORG_CACHE_TTL_MS, or ORG_CACHE_MAX_AGE_MS when it was read while
 * the change feed was live from the start of its read to its end (org-events.ts: every change since reaches this
 * process, or the feed is declared lost and such entries are dropped at once): a large fleet's long tail is then read
 * once a minute instead of once every five seconds, and a change still takes effect at once.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from '../../platform/lib/logger.js';
import { API_KEY_PATTERN, matchesHash } from '../../platform/lib/secrets.js';
import type { ApiKeyRecord, OrgRecord } from './org.js';
import type { OrgRepository } from '../data-access/org.repository.js';

export interface OrgRegistryStats {
  hits: number;
  misses: number;
}

export interface OrgRegistry {
  /** The org, from cache when fresh; undefined when it does not exist (cached too). */
  get(id: number): Promise<OrgRecord | undefined>;
  /**
   * The same, given the request's API key (not checked here): an org and key both uncached are read in one statement
   * (the key joined with its org) and both cached, so verifyKey() then finds the key cached.
   */
  getWithKey(id: number, key: string | undefined): Promise<OrgRecord | undefined>;
  /** The unrevoked API key record matching `key` exactly, or undefined. */
  verifyKey(key: string): Promise<ApiKeyRecord | undefined>;
  /**
   * The hot path's answers without a promise: the org when it is cached and fresh, and the key's record when it is
   * cached, fresh and matches (what verifyKey would answer). Undefined means "ask the async method": not cached, known
   * missing, or not valid; those answers (and their 401/403/404) always come from get/getWithKey/verifyKey.
   */
  peek(id: number): OrgRecord | undefined;
  peekKey(key: string): ApiKeyRecord | undefined;
  /** Drops everything cached about the org (called on org events). */
  invalidate(orgId: number): void;
  /** Drops everything (the change feed was lost: a change may have been missed). */
  invalidateAll(): void;
  stats(): OrgRegistryStats;
}

/**
 * How often a key's use is recorded (`api_keys.last_used_at`), per key and process: a quarter of an hour is precise
 * enough to tell a key in use from one that is not, and a fleet's keys then cost the shared DB a write per key every
 * 15 minutes, not every minute.
 */
const TOUCH_EVERY_MS = 15 * 60_000;
/** Entries per cache: a flood of made-up ids or keys cannot grow memory without bound. */
const MAX_ENTRIES = 50_000;

/** "Known not to exist" (negative caching): lru-cache holds objects only. */
const MISSING = Object.freeze({ missing: true as const });
type Cached<T> = T | typeof MISSING;
/**
 * lru-cache rejects a fetch whose entry was deleted (an invalidation) or set (a joined read of org and key) meanwhile:
 * such a fetch is simply made again (and then finds what was set).
 */
const isDeletedWhileFetching = (err: unknown) => err instanceof Error && (err.message === 'deleted' || err.message === 'replaced');

export interface OrgRegistryDeps {
  repo: Pick<OrgRepository, 'get' | 'findKey' | 'findKeyWithOrg' | 'touchKey'>;
  ttlMs: number;
  /** How long an entry read while the change feed was live stays (ORG_CACHE_MAX_AGE_MS; at most ttlMs: no longer). */
  maxAgeMs?: number;
  /** Whether the change feed is live now (OrgEvents.live); without it every entry lives ttlMs. */
  feedLive?: () => boolean;
  logger: Logger;
  /** Clock in ms (tests pass a fake one). */
  now?: () => number;
  /** Uniform in [0, 1) (tests pass a fixed one): where in the last quarter of its max age a long-lived entry expires. */
  random?: () => number;
}

export function createOrgRegistry(deps: OrgRegistryDeps): OrgRegistry {
  const { repo, ttlMs, logger } = deps;
  const now = deps.now ?? (() => performance.now());
  const longTtl = Math.max(ttlMs, deps.maxAgeMs ?? 0);
  const feedLive = longTtl > ttlMs ? (deps.feedLive ?? (() => false)) : () => false;
  const random = deps.random ?? Math.random;
  /**
   * The TTL of an entry whose read started with the feed live (`startedLive`) and ends now: past ttlMs, somewhere in
   * the last quarter of the max age, so that entries read together (a warm-up, the re-reads after a lost feed) do not
   * all expire together, every max age again.
   */
  const ttlFor = (startedLive: boolean) =>
    startedLive && feedLive() ? longTtl - Math.floor(random() * 0.25 * (longTtl - ttlMs)) : Math.max(1, ttlMs);
  const stats: OrgRegistryStats = { hits: 0, misses: 0 };
  // Bumped by invalidate(): a load that started before an invalidation reads again, so it never caches a stale row.
  let generation = 0;
  const touched = new LRUCache<number, number>({ max: MAX_ENTRIES });

  function cache<K extends string | number, T extends object>(load: (key: K) => Promise<T | undefined>) {
    const fresh = async (key: K): Promise<Cached<T>> => {
      for (let tries = 0; ; tries++) {
        const startedAt = generation;
        const value = (await load(key)) ?? MISSING;
        if (startedAt === generation || tries >= 3) return value;
      }
    };
    const lru = new LRUCache<K, Cached<T>, unknown>({
      max: MAX_ENTRIES,
      ttl: Math.max(1, ttlMs),
      perf: { now },
      ttlResolution: 0, // ask the clock on every read: it is cheap, and tests move it by hand
      // Concurrent misses of one key share one load.
      fetchMethod: (key, _stale, { options }) => {
        stats.misses++;
        const startedLive = feedLive();
        return fresh(key).then((value) => {
          options.ttl = ttlFor(startedLive);
          return value;
        });
      },
    });
    return {
      lru,
      /** The fresh cached value, counted as a hit; undefined when not cached or known missing. */
      peek(key: K): T | undefined {
        if (ttlMs <= 0) return undefined;
        const value = lru.get(key);
        if (value === undefined || value === MISSING) return undefined;
        stats.hits++;
        return value as T;
      },
      async get(key: K): Promise<T | undefined> {
        const found = async (): Promise<Cached<T> | undefined> => {
          if (ttlMs <= 0) {
            stats.misses++;
            return fresh(key);
          }
          if (lru.has(key)) stats.hits++;
          for (let tries = 0; tries < 3; tries++) {
            try {
              return await lru.fetch(key);
            } catch (err) {
              if (!isDeletedWhileFetching(err)) throw err;
            }
          }
          // Invalidated under every load (a burst of org events, e.g. debits near a low balance): read it fresh, uncached.
          return fresh(key);
        };
        const value = await found();
        return value === MISSING ? undefined : (value as T | undefined);
      },
    };
  }

  const orgs = cache<number, OrgRecord>((id) => repo.get(id));
  const keys = cache<string, ApiKeyRecord>((prefix) => repo.findKey(prefix));

  /**
   * A tenant not seen lately (the long tail of a large fleet): its org and key in one read instead of two. Only when
   * neither is cached; cached only if no invalidation ran meanwhile (as `fresh` does); the key's org answered only
   * when it is the org asked for (else the org is read on its own, and 401/403 follow as usual).
   */
  const joinedReads = new Map<string, Promise<OrgRecord | null>>();
  async function readWithKey(id: number, key: string | undefined): Promise<OrgRecord | null> {
    const prefix = key === undefined ? undefined : API_KEY_PATTERN.exec(key)?.[1];
    if (!prefix || ttlMs <= 0 || orgs.lru.has(id) || keys.lru.has(prefix)) return null;
    // Concurrent first requests of one tenant share one read (a burst on a cold tenant).
    let read = joinedReads.get(prefix);
    if (!read) {
      const startedAt = generation;
      const startedLive = feedLive();
      stats.misses++;
      read = repo
        .findKeyWithOrg(prefix)
        .then((found) => {
          if (startedAt !== generation) return null;
          const ttl = ttlFor(startedLive);
          keys.lru.set(prefix, found?.key ?? MISSING, { ttl });
          if (found) orgs.lru.set(found.org.id, found.org, { ttl });
          return found?.org ?? null;
        })
        .finally(() => joinedReads.delete(prefix));
      joinedReads.set(prefix, read);
    }
    const org = await read;
    return org?.id === id ? org : null;
  }

  /** The record if it exists, is not revoked and matches the key; its use is recorded at most every TOUCH_EVERY_MS. */
  function accepted(key: string, record: ApiKeyRecord | undefined): ApiKeyRecord | undefined {
    if (!record || record.revokedAt || !matchesHash(key, record.keyHash)) return undefined;
    const at = now();
    const last = touched.get(record.id);
    if (last === undefined || at - last > TOUCH_EVERY_MS) {
      touched.set(record.id, at);
      repo.touchKey(record.id).catch((err: Error) => logger.warn('could not record api key use', { err: err.message }));
    }
    return record;
  }

  return {
    get: (id) => orgs.get(id),
    async getWithKey(id, key) {
      return (await readWithKey(id, key)) ?? orgs.get(id);
    },
    async verifyKey(key) {
      const m = API_KEY_PATTERN.exec(key);
      if (!m) return undefined;
      return accepted(key, await keys.get(m[1]!));
    },
    peek: (id) => orgs.peek(id),
    peekKey(key) {
      const prefix = API_KEY_PATTERN.exec(key)?.[1];
      return prefix === undefined ? undefined : accepted(key, keys.peek(prefix));
    },
    invalidate(orgId) {
      generation++;
      orgs.lru.delete(orgId);
      for (const [prefix, entry] of keys.lru.entries())
        if (entry === MISSING || (entry as ApiKeyRecord).orgId === orgId) keys.lru.delete(prefix);
    },
    invalidateAll() {
      generation++;
      orgs.lru.clear();
      keys.lru.clear();
    },
    stats: () => ({ ...stats }),
  };
}
