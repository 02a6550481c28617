/**
 * Cross-process invalidation: "org N changed" published on Redis so every API and worker drops its cached copy.
 * On Redis Cluster it is sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7): the channel lives in the prefix's slot, so
 * its messages stay on that shard instead of being broadcast over the whole cluster bus.
 *
 * The feed is "live" while changes are known to reach this process: subscribed, and the subscriber's connection
 * answered a PING sent less than `lostAfterMs` ago. Redis answers a connection's commands in order and pushes a
 * channel's messages on it as they are published, so a PONG proves that every change published before its PING has
 * arrived. Pinged every `heartbeatMs`; when the connection closes or a PONG is overdue, the feed is lost (a change may
 * have been missed) and `onLost` handlers run: caches that keep entries past ORG_CACHE_TTL_MS on the strength of the
 * feed drop them. Not on Redis Cluster (a sharded subscriber has no connection of its own to ping): never live there.
 *
 * A change that cannot be published (Redis unreachable from the process that made it, as a CLI on the wrong side of a
 * partition) is written to the shared DB's change log instead, which every subscribing process reads about once a
 * second (each heartbeat): it takes effect there within a second or so, not at the end of ORG_CACHE_MAX_AGE_MS.
 */
import { createRedis, isCluster, type RedisClient, type RedisTarget } from '../../platform/lib/redis.js';
import type { Logger } from '../../platform/lib/logger.js';
import { withTimeout } from '../../platform/lib/timeout.js';

export interface OrgChange {
  orgId: number;
  reason: string;
}

export interface OrgEvents {
  /**
   * Publishes a change; never throws. True when Redis took it (every live subscriber gets it); false when it could not
   * be published: it is then in the change log (every subscriber reads it within a second or so) or, when that failed
   * too, other processes see the change only when their cached entry expires (ORG_CACHE_MAX_AGE_MS).
   */
  publish(change: OrgChange): Promise<boolean>;
  /** Registers a handler, called for changes from any process, this one included. */
  onChange(handler: (change: OrgChange) => void): void;
  /** Whether every change published up to `lostAfterMs` ago is known to have reached this process. */
  live(): boolean;
  /**
   * Since the process started: changes it could not publish (and of those, could not log either), changes it took from
   * the log, and reads of the log that failed.
   */
  stats(): { unpublished: number; unlogged: number; fromLog: number; logReadFailures: number };
  /** Registers a handler called when the feed stops being live (a change may have been missed). */
  onLost(handler: () => void): void;
  /** Resolves true once the subscription is active, false if it is not within timeoutMs (Redis unreachable). */
  ready(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Where changes that could not be published are written, and read back by every subscriber (the shared DB). */
export interface OrgChangeLog {
  /** Logs a change; answers its id. */
  record(change: OrgChange): Promise<number>;
  /** The changes logged in the last `windowMs`, oldest first, with their ids; at most `limit` of them. */
  recent(windowMs: number): Promise<Array<OrgChange & { id: number }>>;
  /** The most rows recent() answers: a read that gets this many may have left newer ones out. */
  readonly limit: number;
}

export interface OrgEventsOptions {
  redis: RedisTarget;
  prefix: string;
  logger: Logger;
  subscribe?: boolean;
  /** How often the subscriber's connection is pinged (default 1000 ms). */
  heartbeatMs?: number;
  /** The feed is lost when the last answered PING was sent longer ago than this (default 2500 ms). */
  lostAfterMs?: number;
  /** A change that could not be published (logged or not) is tried again every second for this long (ORG_CACHE_MAX_AGE_MS). */
  republishForMs?: number;
  /** The fallback for changes that cannot be published. */
  log?: OrgChangeLog;
  /** How often a subscriber reads the log (default `heartbeatMs`; 0: never, when entries live no longer than the TTL). */
  logReadMs?: number;
  /** How far back each read of the log goes: the longest a cached entry lives (default `republishForMs`, at least 10 s). */
  logWindowMs?: number;
  /** Clock in ms (performance.now()). */
  now?: () => number;
}

/** Creates the pub/sub pair on `<prefix>:tenancy:org-changed`. */
export function createOrgEvents(opts: OrgEventsOptions): OrgEvents {
  const sharded = isCluster(opts.redis);
  const channel = `${opts.prefix}:tenancy:org-changed`;
  const handlers: ((c: OrgChange) => void)[] = [];
  const lostHandlers: (() => void)[] = [];
  const publisher = createRedis(opts.redis, 'command', { lazyConnect: true });
  publisher.on('error', () => undefined);
  const emit = (c: OrgChange) => handlers.forEach((h) => h(c));
  const now = opts.now ?? (() => performance.now());
  const heartbeatMs = opts.heartbeatMs ?? 1000;
  const lostAfterMs = opts.lostAfterMs ?? 2500;

  let subscriber: RedisClient | undefined;
  let subscribed: Promise<boolean> = Promise.resolve(true);
  /** When the PING last answered on the current connection was sent; undefined: not live. */
  let confirmedAt: number | undefined;
  /** Bumped when the subscriber's connection closes: an answer to a PING sent before proves nothing after. */
  let connection = 0;
  let heartbeat: NodeJS.Timeout | undefined;
  /** Fires when the last answer is `lostAfterMs` old: the feed is lost then, not at the next heartbeat. */
  let overdue: NodeJS.Timeout | undefined;
  /** Changes whose publish failed, by org, with when they were first tried: published again until they get through. */
  const unpublished = new Map<number, { change: OrgChange; since: number }>();
  let republisher: NodeJS.Timeout | undefined;
  const republishForMs = opts.republishForMs ?? 60_000;
  /**
   * Reads the change log; the ids of the logged changes already handled (those still within the window; undefined
   * until the first read that succeeds), and the ids this process logged itself.
   */
  let logReader: NodeJS.Timeout | undefined;
  let handledLogged: Set<number> | undefined;
  const ownLogged = new Set<number>();
  let readingLog = false;
  /** A streak of failed reads is logged once, at its start (and its end). */
  let logReadFailing = false;
  const logWindowMs = Math.max(10_000, opts.logWindowMs ?? republishForMs);
  const counts = { unpublished: 0, unlogged: 0, fromLog: 0, logReadFailures: 0 };

  function confirmed(sentAt: number): void {
    if (confirmedAt !== undefined && sentAt <= confirmedAt) return;
    confirmedAt = sentAt;
    watch();
  }
  /** (Re)arms the timer for the moment the last answer is `lostAfterMs` old. */
  function watch(): void {
    clearTimeout(overdue);
    if (confirmedAt === undefined) return;
    overdue = setTimeout(checkOverdue, Math.max(0, confirmedAt + lostAfterMs - now()) + 1);
    overdue.unref();
  }
  function checkOverdue(): void {
    if (confirmedAt === undefined) return;
    if (now() - confirmedAt > lostAfterMs) lost('no answer to the subscriber heartbeat');
    // A timer can fire early against the high-resolution clock (libuv counts from the loop's cached time): again.
    else watch();
  }

  function lost(why: string): void {
    if (confirmedAt === undefined) return;
    confirmedAt = undefined;
    clearTimeout(overdue);
    opts.logger.warn('org events: the change feed is lost; cached orgs and keys are dropped and read again', { why });
    lostHandlers.forEach((h) => h());
  }

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
    if (!sharded) {
      sub.on('close', () => {
        connection++;
        lost('the subscriber connection closed');
      });
      const ping = () => {
        checkOverdue(); // a backstop for the timer
        // Only on a ready connection: ioredis resubscribes before it is ready, so the PONG comes after the SUBSCRIBE's.
        if (sub.status !== 'ready') return;
        const sentAt = now();
        const on = connection;
        sub.ping().then(
          () => {
            if (on === connection) confirmed(sentAt);
          },
          () => undefined,
        );
      };
      void subscribed.then((ok) => {
        if (!ok) return;
        ping();
        heartbeat = setInterval(ping, heartbeatMs);
        heartbeat.unref();
      });
    }
    const log = opts.log;
    const readEveryMs = opts.logReadMs ?? heartbeatMs;
    if (log && readEveryMs > 0) {
      void readLog(log, readEveryMs);
      logReader = setInterval(() => void readLog(log, readEveryMs), readEveryMs);
      logReader.unref();
    }
  }

  /**
   * Handles the changes logged within the window that were not handled yet. By time, not by "ids after the last":
   * an insert that commits after a later id was read is still seen. A read that fails or takes longer than twice the
   * interval is given up and tried again at the next tick: the window is the longest a cached entry lives, so what was
   * logged meanwhile is still read once the shared DB answers, or has expired from every cache. A read that fills a
   * whole page may have left newer changes out: every cached org and key is dropped then.
   */
  async function readLog(log: OrgChangeLog, everyMs: number): Promise<void> {
    if (readingLog) return;
    readingLog = true;
    try {
      const changes = await withTimeout(log.recent(logWindowMs), Math.max(1000, 2 * everyMs), 'change log read');
      const handled = new Set<number>();
      // The first read also drops what it finds (harmless at start, and needed when the reads failed for a while first),
      // without counting it.
      const first = handledLogged === undefined;
      for (const { id, orgId, reason } of changes) {
        handled.add(id);
        const own = ownLogged.delete(id);
        if (own || handledLogged?.has(id)) continue;
        if (!first) counts.fromLog++;
        emit({ orgId, reason });
      }
      handledLogged = handled;
      if (logReadFailing) opts.logger.info('org events: the change log is read again');
      logReadFailing = false;
      if (changes.length >= log.limit) {
        opts.logger.warn('org events: the change log holds more than one read takes; cached orgs and keys are dropped', {
          changes: changes.length,
        });
        lostHandlers.forEach((h) => h());
      }
    } catch (err) {
      counts.logReadFailures++;
      if (!logReadFailing)
        opts.logger.warn('org events: the change log could not be read; tried again at each heartbeat', { err: (err as Error).message });
      logReadFailing = true;
    } finally {
      readingLog = false;
    }
  }

  async function send(change: OrgChange): Promise<void> {
    if (publisher.status === 'wait') await publisher.connect();
    await (sharded ? publisher.spublish(channel, JSON.stringify(change)) : publisher.publish(channel, JSON.stringify(change)));
  }

  /** Tries the unpublished changes again; one that still fails after `republishForMs` is given up. */
  async function republish(): Promise<void> {
    for (const [orgId, u] of [...unpublished]) {
      try {
        await send(u.change);
        unpublished.delete(orgId);
      } catch {
        if (now() - u.since > republishForMs) unpublished.delete(orgId);
      }
    }
    if (unpublished.size === 0) {
      clearInterval(republisher);
      republisher = undefined;
    }
  }

  return {
    async publish(change) {
      emit(change);
      try {
        await send(change);
        unpublished.delete(change.orgId);
        return true;
      } catch (err) {
        counts.unpublished++;
        const logged = await opts.log?.record(change).then(
          (id) => {
            if (logReader) ownLogged.add(id); // not read back as another process's
            return true;
          },
          (logErr: Error) => {
            counts.unlogged++;
            opts.logger.warn('org events: the change could not be logged in the shared DB either', {
              orgId: change.orgId,
              err: logErr.message,
            });
            return false;
          },
        );
        opts.logger.warn(
          logged
            ? 'org events: publish failed; the change is in the shared DB change log (every process reads it within a second) and is published again every second'
            : 'org events: publish failed; tried again every second, other processes see the change within ORG_CACHE_MAX_AGE_MS',
          { orgId: change.orgId, err: (err as Error).message },
        );
        // Published again even when logged: a process that does not read the log (an older version, or one whose reads
        // fail) still gets it.
        if (!unpublished.has(change.orgId)) unpublished.set(change.orgId, { change, since: now() });
        if (!republisher) {
          republisher = setInterval(() => void republish(), 1000);
          republisher.unref();
        }
        return false;
      }
    },
    onChange(handler) {
      handlers.push(handler);
    },
    live: () => confirmedAt !== undefined && now() - confirmedAt <= lostAfterMs,
    stats: () => ({ ...counts }),
    onLost(handler) {
      lostHandlers.push(handler);
    },
    ready: (timeoutMs = 2000) => withTimeout(subscribed, timeoutMs).catch(() => false),
    close() {
      clearInterval(heartbeat);
      clearInterval(republisher);
      clearInterval(logReader);
      clearTimeout(overdue);
      confirmedAt = undefined;
      publisher.disconnect();
      subscriber?.disconnect();
      return Promise.resolve();
    },
  };
}
