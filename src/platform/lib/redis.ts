/**
 * Every Redis client of the project is made here, so its options live in one place: one Redis (`REDIS_URL`) by
 * default, or Redis Cluster (`REDIS_CLUSTER_NODES`) through ioredis `Cluster` with the same roles.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/** A client of either kind: both speak the same commands (and BullMQ takes either). */
export type RedisClient = Redis | Cluster;

/** Where Redis is: a URL, or the seed nodes (`host:port`) of a cluster. */
export interface RedisTarget {
  redisUrl: string;
  /** Set: Redis Cluster, seeded from these nodes. */
  redisClusterNodes?: readonly string[];
}

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
  // Auto-pipelined: commands issued in one tick leave in one write (rate-limits.ts sends its refills together).
  command: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 1000, enableAutoPipelining: true },
  producer: { enableOfflineQueue: false, maxRetriesPerRequest: null, connectTimeout: 1000 },
  blocking: { maxRetriesPerRequest: null, connectTimeout: 1000 },
};

/**
 * The Cluster options of each role (measured against a local cluster, docs/operations.md): a command that meets a
 * failover (its master died, or CLUSTERDOWN while a replica takes over) is retried every 300 ms, within ioredis's
 * 16 redirections (about 5 s), which rides through a failover of a few seconds instead of failing; the slot map is
 * refreshed every 5 s as well as on MOVED (ioredis 6 does not refresh by itself).
 */
const CLUSTER: ClusterOptions = {
  slotsRefreshInterval: 5000,
  slotsRefreshTimeout: 1000,
  retryDelayOnFailover: 300,
  retryDelayOnClusterDown: 300,
};
const CLUSTER_OPTIONS: Record<RedisRole, ClusterOptions> = {
  command: {
    ...CLUSTER,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    redisOptions: { connectTimeout: 1000, maxRetriesPerRequest: 1 },
  },
  producer: { ...CLUSTER, enableOfflineQueue: false, redisOptions: { connectTimeout: 1000 } },
  blocking: { ...CLUSTER, redisOptions: { connectTimeout: 1000, maxRetriesPerRequest: null } },
};

/** User, password and TLS of a `redis://` / `rediss://` URL: in Cluster mode they apply to every node. */
function credentialsOf(url: string): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  const u = new URL(url);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** True when the project runs on Redis Cluster. */
export const isCluster = (target: RedisTarget) => Boolean(target.redisClusterNodes?.length);

/**
 * A new client of the given role; `lazyConnect` defers connecting to the first command (call `connect()` first in
 * Cluster mode, where a client without an offline queue refuses commands until it is ready). `shardedSubscribers`:
 * a Cluster subscriber of sharded pub/sub (SSUBSCRIBE).
 */
export function createRedis(
  target: RedisTarget,
  role: RedisRole,
  extra: Pick<RedisOptions, 'lazyConnect'> & { shardedSubscribers?: boolean } = {},
): RedisClient {
  const { shardedSubscribers, ...rest } = extra;
  if (isCluster(target)) {
    const options = CLUSTER_OPTIONS[role];
    return endRefreshesOnClose(
      new Cluster([...target.redisClusterNodes!], {
        ...options,
        ...rest,
        shardedSubscribers,
        redisOptions: { ...options.redisOptions, ...credentialsOf(target.redisUrl) },
      }),
    );
  }
  return new Redis(target.redisUrl, { ...OPTIONS[role], ...rest });
}

/**
 * ioredis (5.x) Cluster: a slots refresh under way when `disconnect()` is called schedules the next round when it ends
 * (`slotsRefreshInterval`), and every round the next: a timer that keeps a closed client's process alive for ever (seen
 * as a test run that never exits after a master failover). Once the client is closed on purpose, a refresh is not
 * started and its callback not called, so the rounds end (at most one interval after the close).
 */
export function endRefreshesOnClose(cluster: Cluster): Cluster {
  const internals = cluster as unknown as { manuallyClosing?: boolean; refreshSlotsCache(cb?: (err?: Error) => void): void };
  const refresh = internals.refreshSlotsCache.bind(cluster);
  internals.refreshSlotsCache = (cb) => {
    if (internals.manuallyClosing === true) return;
    refresh(cb);
  };
  return cluster;
}

/**
 * The masters of a cluster (each asked on its own: CONFIG, SCAN and INFO answer for one node), or the one Redis. A
 * cluster client knows its masters once it is ready: this waits for that (at most `timeoutMs`) and answers [] if not.
 */
export async function everyMaster(client: RedisClient, timeoutMs = 2000): Promise<Redis[]> {
  if (!(client instanceof Cluster)) return [client];
  if (client.status !== 'ready') {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      client.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  return client.nodes('master');
}
