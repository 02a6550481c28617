/**
 * Cross-process invalidation: "org N changed" published on Redis so every API and worker drops its cached copy.
 * On Redis Cluster it is sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7): the channel lives in the prefix's slot, so
 * its messages stay on that shard instead of being broadcast over the whole cluster bus.
 */
import { createRedis, isCluster, type RedisClient, type RedisTarget } from '../../platform/lib/redis.js';
import type { Logger } from '../../platform/lib/logger.js';
import { withTimeout } from '../../platform/lib/timeout.js';

export interface OrgChange {
  orgId: number;
  reason: string;
}

export interface OrgEvents {
  /** Publishes a change; never throws (caches also expire by TTL if Redis is unreachable). */
  publish(change: OrgChange): Promise<void>;
  /** Registers a handler, called for changes from any process, this one included. */
  onChange(handler: (change: OrgChange) => void): void;
  /** Resolves true once the subscription is active, false if it is not within timeoutMs (Redis unreachable). */
  ready(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Creates the pub/sub pair on `<prefix>:tenancy:org-changed`. */
export function createOrgEvents(opts: { redis: RedisTarget; prefix: string; logger: Logger; subscribe?: boolean }): OrgEvents {
  const sharded = isCluster(opts.redis);
  const channel = `${opts.prefix}:tenancy:org-changed`;
  const handlers: ((c: OrgChange) => void)[] = [];
  const publisher = createRedis(opts.redis, 'command', { lazyConnect: true });
  publisher.on('error', () => undefined);
  const emit = (c: OrgChange) => handlers.forEach((h) => h(c));

  let subscriber: RedisClient | undefined;
  let subscribed: Promise<boolean> = Promise.resolve(true);
  if (opts.subscribe !== false) {
    const sub = createRedis(opts.redis, 'blocking', sharded ? { shardedSubscribers: true } : {});
    subscriber = sub;
    sub.on('error', (err: Error) => opts.logger.debug('org events subscriber error', { err: err.message }));
    sub.on(sharded ? 'smessage' : 'message', (ch: string, raw: string) => {
      if (ch !== channel) return;
      try {
        const c = JSON.parse(raw) as OrgChange;
        if (Number.isSafeInteger(c.orgId)) emit(c);
      } catch {
        opts.logger.warn('ignored malformed org event');
      }
    });
    subscribed = (sharded ? sub.ssubscribe(channel) : sub.subscribe(channel)).then(
      () => true,
      (err: Error) => {
        opts.logger.warn('org events: subscribe failed; caches rely on TTL', { err: err.message });
        return false;
      },
    );
  }

  return {
    async publish(change) {
      emit(change);
      try {
        if (publisher.status === 'wait') await publisher.connect();
        await (sharded ? publisher.spublish(channel, JSON.stringify(change)) : publisher.publish(channel, JSON.stringify(change)));
      } catch (err) {
        opts.logger.warn('org events: publish failed; other processes rely on TTL', { orgId: change.orgId, err: (err as Error).message });
      }
    },
    onChange(handler) {
      handlers.push(handler);
    },
    ready: (timeoutMs = 2000) => withTimeout(subscribed, timeoutMs).catch(() => false),
    close() {
      publisher.disconnect();
      subscriber?.disconnect();
      return Promise.resolve();
    },
  };
}
