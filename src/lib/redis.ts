/** Every Redis client of the project is made here, so its options (and, later, Cluster mode) live in one place. */
import { Redis, type RedisOptions } from 'ioredis';

/**
 * What a client is for:
 * - `command`: readiness, rate limits, publishing: fails fast (no offline queue), so a Redis outage
 *   answers at once instead of piling up requests;
 * - `producer`: BullMQ queues that add jobs: fail fast too, but one slow command is never retried into a duplicate;
 * - `blocking`: BullMQ workers and QueueEvents, the pub/sub subscriber: waits and retries for ever, as BullMQ requires
 *   (`maxRetriesPerRequest: null`).
 */
export type RedisRole = 'command' | 'producer' | 'blocking';

const OPTIONS: Record<RedisRole, RedisOptions> = {
  command: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 1000 },
  producer: { enableOfflineQueue: false, maxRetriesPerRequest: null, connectTimeout: 1000 },
  blocking: { maxRetriesPerRequest: null, connectTimeout: 1000 },
};

/** A new client of the given role; `lazyConnect` defers connecting to the first command. */
export function createRedis(url: string, role: RedisRole, extra: Pick<RedisOptions, 'lazyConnect'> = {}): Redis {
  return new Redis(url, { ...OPTIONS[role], ...extra });
}
