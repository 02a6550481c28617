/**
 * Per-org concurrency of a queue's jobs across every worker process: an org may have at most `limit` jobs of the
 * queue running at once (its delivery concurrency, or the webhook one). Fairness (src/queue/fair-share.ts) decides
 * who goes first; this caps how much of the workers one org may hold, e.g. a slow webhook endpoint.
 *
 * In Redis, all under the queue prefix (one hash slot in Cluster mode, where the prefix carries a hash tag):
 * - `<prefix>:org-slots:<queue>:<org>`   ZSET job id → lease expiry (ms): the org's running jobs;
 * - `<prefix>:org-parked:<queue>:<org>`  ZSET job id → parked at (ms): its jobs held back by the cap, oldest first;
 * - `<prefix>:org-slots:<queue>` and `<prefix>:org-parked:<queue>`  ZSET org → count: the busiest orgs at a glance.
 *
 * A job that finds the org's slots full is parked (the worker moves it to BullMQ's delayed set); each release wakes
 * the org's oldest parked job (BullMQ promote), so a capped org keeps exactly `limit` jobs running. A lease outlives
 * a crashed worker by at most `leaseMs`; a parked job whose wake-up was lost wakes on its own after its delay.
 */
import type { RedisClient } from '../lib/redis.js';

export interface SlotGrant {
  granted: boolean;
  /** When not granted: how many of the org's jobs are parked (this one included). */
  parked: number;
}

export interface OrgLoad {
  orgId: number;
  inFlight: number;
  parked: number;
}

export interface OrgSlots {
  /** Takes one of the org's `limit` slots for the job, or parks the job (answering how many are parked). */
  acquire(orgId: number, jobId: string, limit: number): Promise<SlotGrant>;
  /** Gives the job's slot back; answers the org's oldest parked job to wake, if any (taken off the parked list). */
  release(orgId: number, jobId: string): Promise<string | undefined>;
  /** The org's jobs running and parked now. */
  load(orgId: number): Promise<OrgLoad>;
  /** The orgs with the most jobs running (then parked), at most `n`. */
  busiest(n: number): Promise<OrgLoad[]>;
}

/**
 * KEYS: slots, parked, slots summary, parked summary. ARGV: job id, limit, now, lease ms, org id.
 * Expired leases (a crashed worker's) are dropped first; a job that already holds a slot renews it.
 */
const ACQUIRE = `
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if expired > 0 then
  if tonumber(redis.call('ZINCRBY', KEYS[3], -expired, ARGV[5])) <= 0 then redis.call('ZREM', KEYS[3], ARGV[5]) end
end
local expiry = tonumber(ARGV[3]) + tonumber(ARGV[4])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return {1, 0}
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[5])
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
    if tonumber(redis.call('ZINCRBY', KEYS[4], -1, ARGV[5])) <= 0 then redis.call('ZREM', KEYS[4], ARGV[5]) end
  end
  return {1, 0}
end
if redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1]) == 1 then redis.call('ZINCRBY', KEYS[4], 1, ARGV[5]) end
redis.call('PEXPIRE', KEYS[2], 86400000)
return {0, redis.call('ZCARD', KEYS[2])}
`;

/** KEYS: as ACQUIRE. ARGV: job id, org id. Answers the parked job to wake, or false. */
const RELEASE = `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  if tonumber(redis.call('ZINCRBY', KEYS[3], -1, ARGV[2])) <= 0 then redis.call('ZREM', KEYS[3], ARGV[2]) end
end
local next = redis.call('ZPOPMIN', KEYS[2])
if next[1] then
  if tonumber(redis.call('ZINCRBY', KEYS[4], -1, ARGV[2])) <= 0 then redis.call('ZREM', KEYS[4], ARGV[2]) end
  return next[1]
end
return false
`;

interface SlotCommands {
  orgSlotAcquire(...args: (string | number)[]): Promise<[number, number]>;
  orgSlotRelease(...args: (string | number)[]): Promise<string | null>;
}

/** Creates the slots of one queue over a Redis client (a fail-fast one: callers decide what an outage means). */
export function createOrgSlots(opts: { redis: RedisClient; prefix: string; queue: string; leaseMs: number; now?: () => number }): OrgSlots {
  const { redis, prefix, queue, leaseMs } = opts;
  const now = opts.now ?? Date.now;
  // defineCommand: EVALSHA, with the script sent again only when the server does not have it.
  redis.defineCommand('orgSlotAcquire', { numberOfKeys: 4, lua: ACQUIRE });
  redis.defineCommand('orgSlotRelease', { numberOfKeys: 4, lua: RELEASE });
  const commands = redis as unknown as SlotCommands;
  const slotsSummary = `${prefix}:org-slots:${queue}`;
  const parkedSummary = `${prefix}:org-parked:${queue}`;
  const keys = (orgId: number) => [`${slotsSummary}:${orgId}`, `${parkedSummary}:${orgId}`, slotsSummary, parkedSummary];

  async function load(orgId: number): Promise<OrgLoad> {
    const [slots, parked] = keys(orgId);
    const [inFlight, waiting] = await Promise.all([redis.zcount(slots!, now(), '+inf'), redis.zcard(parked!)]);
    return { orgId, inFlight, parked: waiting };
  }

  return {
    async acquire(orgId, jobId, limit) {
      const [granted, parked] = await commands.orgSlotAcquire(...keys(orgId), jobId, limit, now(), leaseMs, orgId);
      return { granted: granted === 1, parked };
    },
    async release(orgId, jobId) {
      return (await commands.orgSlotRelease(...keys(orgId), jobId, orgId)) ?? undefined;
    },
    load,
    async busiest(n) {
      // The summaries rank; each candidate is then counted exactly (a crashed worker's lease, past its expiry, is
      // only dropped from the summary at the org's next acquire).
      const [running, parked] = await Promise.all([
        redis.zrevrange(slotsSummary, 0, 2 * n - 1),
        redis.zrevrange(parkedSummary, 0, 2 * n - 1),
      ]);
      const candidates = [...new Set([...running, ...parked].map(Number))];
      const loads = await Promise.all(candidates.map((orgId) => load(orgId)));
      return loads
        .filter((l) => l.inFlight + l.parked > 0)
        .sort((a, b) => b.inFlight - a.inFlight || b.parked - a.parked || a.orgId - b.orgId)
        .slice(0, n);
    },
  };
}
