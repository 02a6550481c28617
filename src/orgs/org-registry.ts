/** Cached org and API-key lookups for the hot path: short TTL, negative caching, single flight, explicit invalidation. */
import type { Logger } from '../lib/logger.js';
import { API_KEY_PATTERN, safeEqual, sha256 } from '../lib/secrets.js';
import type { ApiKeyRecord, OrgRecord, OrgRepository } from './org.repository.js';

interface Cached<T> {
  value: T | undefined;
  expires: number;
}

export interface OrgRegistryStats {
  hits: number;
  misses: number;
}

export interface OrgRegistry {
  /** The org, from cache when fresh; undefined when it does not exist (cached too). */
  get(id: number): Promise<OrgRecord | undefined>;
  /** The unrevoked API key record matching `key` exactly, or undefined. */
  verifyKey(key: string): Promise<ApiKeyRecord | undefined>;
  /** Drops everything cached about the org (called on org events). */
  invalidate(orgId: number): void;
  stats(): OrgRegistryStats;
}

const TOUCH_EVERY_MS = 60_000;
/** Entries per cache: a flood of made-up ids or keys cannot grow memory without bound. */
const MAX_ENTRIES = 50_000;

/** Creates the registry over the org repository. */
export function createOrgRegistry(deps: { repo: OrgRepository; ttlMs: number; logger: Logger; now?: () => number }): OrgRegistry {
  const { repo, ttlMs, logger } = deps;
  const now = deps.now ?? Date.now;
  const orgs = new Map<number, Cached<OrgRecord>>();
  const keys = new Map<string, Cached<ApiKeyRecord>>();
  const inflightOrgs = new Map<number, Promise<OrgRecord | undefined>>();
  const inflightKeys = new Map<string, Promise<ApiKeyRecord | undefined>>();
  const touched = new Map<number, number>();
  const stats: OrgRegistryStats = { hits: 0, misses: 0 };
  // Bumped by invalidate(): a load that started before an invalidation must not repopulate the cache.
  let generation = 0;

  async function cached<K, T>(cache: Map<K, Cached<T>>, inflight: Map<K, Promise<T | undefined>>, key: K, load: () => Promise<T | undefined>) {
    const hit = cache.get(key);
    if (hit && hit.expires > now()) {
      stats.hits++;
      return hit.value;
    }
    stats.misses++;
    let p = inflight.get(key);
    if (!p) {
      const startedAt = generation;
      p = load().then((value) => {
        if (startedAt === generation && ttlMs > 0) {
          cache.delete(key); // re-insert at the end: the Map is kept in insertion order, oldest first out
          cache.set(key, { value, expires: now() + ttlMs });
          if (cache.size > MAX_ENTRIES) cache.delete(cache.keys().next().value!);
        }
        return value;
      }).finally(() => inflight.delete(key));
      inflight.set(key, p);
    }
    return p;
  }

  return {
    get: (id) => cached(orgs, inflightOrgs, id, () => repo.get(id)),
    async verifyKey(key) {
      const m = API_KEY_PATTERN.exec(key);
      if (!m) return undefined;
      const record = await cached(keys, inflightKeys, m[1]!, () => repo.findKey(m[1]!));
      if (!record || record.revokedAt || !safeEqual(record.keyHash, sha256(key))) return undefined;
      const last = touched.get(record.id) ?? 0;
      if (now() - last > TOUCH_EVERY_MS) {
        touched.set(record.id, now());
        repo.touchKey(record.id).catch((err: Error) => logger.warn('could not record api key use', { err: err.message }));
      }
      return record;
    },
    invalidate(orgId) {
      generation++;
      orgs.delete(orgId);
      for (const [prefix, entry] of keys) if (!entry.value || entry.value.orgId === orgId) keys.delete(prefix);
    },
    stats: () => ({ ...stats }),
  };
}
