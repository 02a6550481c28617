/**
 * Per-org concurrency of a queue's jobs across every worker process: an org may have at most `limit` jobs of the
 * queue running at once (its delivery concurrency, or the webhook one). Fairness (src/platform/queue/fair-share.ts) decides
 * who goes first; this caps how much of the workers one org may hold, e.g. a slow webhook endpoint.
 *
 * In Redis, all under the queue prefix (one hash permit in Cluster mode, where the prefix carries a hash tag):
 * - `<prefix>:org-slots:<queue>:<org>`   ZSET job id → lease expiry (ms): the org's running jobs;
 * - `<prefix>:org-parked:<queue>:<org>`  ZSET job id → parked at (ms): its jobs held back by the cap, oldest first;
 * - `<prefix>:org-slots:<queue>` and `<prefix>:org-parked:<queue>`  ZSET org → count: the busiest orgs at a glance.
 *
 * A job that finds the org's permits full is parked (the worker moves it to BullMQ's delayed set); each release hands
 * the freed permit to the org's oldest parked job and wakes it (BullMQ promote), so a capped org keeps its cap running
 * and its jobs run in the order they were parked. A running job renews its lease; a crashed worker's lease lapses
 * after `leaseMs`; a parked job whose wake-up was lost wakes on its own after its delay. Times are the workers'
 * clocks (leases are tens of seconds: keep them NTP-synchronised).
 */
import type { RedisClient } from '../lib/redis.js';

export interface PermitGrant {
  granted: boolean;
  /** When not granted: the job's place among the org's parked jobs (1 = the next to wake). */
  parked: number;
}

export interface OrgLoad {
  orgId: number;
  inFlight: number;
  parked: number;
}

export interface OrgPermits {
  /** Takes one of the org's `limit` permits for the job, or parks the job (answering how many are parked). */
  acquire(orgId: number, jobId: string, limit: number): Promise<PermitGrant>;
  /** Extends the lease of a job still running (false when it no longer holds a permit). */
  renew(orgId: number, jobId: string): Promise<boolean>;
  /**
   * Gives the job's permit back. With `wake` (the default), the org's oldest parked job is taken off the parked list and
   * handed the permit; it is answered, for the caller to wake (or to release in turn, should it not be wakeable).
   */
  release(orgId: number, jobId: string, wake?: boolean): Promise<string | undefined>;
  /** The org's jobs running and parked now. */
  load(orgId: number): Promise<OrgLoad>;
  /** The orgs with the most jobs running (then parked), at most `n`. */
  busiest(n: number): Promise<OrgLoad[]>;
}

/**
 * Shared by the scripts: the summaries are set to the exact sizes of the org's keys after every change (never
 * counted up and down, so nothing a crash or an expired key leaves behind can make them drift).
 */
const SYNC = `
local function sync(key, summary, org)
  local n = redis.call('ZCARD', key)
  if n > 0 then redis.call('ZADD', summary, n, org) else redis.call('ZREM', summary, org) end
end
`;

/**
 * KEYS: permits, parked, permits summary, parked summary. ARGV: job id, limit, now, lease ms, org id.
 * Expired leases (a crashed worker's) are dropped first; a job that already holds a permit (a renewal, or a job woken
 * with a permit handed to it) keeps it. Answers {1, 0} when granted, else {0, the job's place among the parked}.
 */
const ACQUIRE = `${SYNC}
local now = tonumber(ARGV[3])
local expiry = now + tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local granted = redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2])
if granted then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], 'NX', now, ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], 86400000)
redis.call('PEXPIRE', KEYS[2], 86400000)
sync(KEYS[1], KEYS[3], ARGV[5])
sync(KEYS[2], KEYS[4], ARGV[5])
if granted then return {1, 0} end
return {0, redis.call('ZRANK', KEYS[2], ARGV[1]) + 1}
`;

/** KEYS: as ACQUIRE. ARGV: job id, now, lease ms, org id. Extends the job's lease if it still holds one. */
const RENEW = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 86400000)
  return 1
end
return 0
`;

/**
 * KEYS: as ACQUIRE. ARGV: job id, now, lease ms, org id, "wake". Gives the job's permit back; with "wake", pops the
 * org's oldest parked job and hands it the freed permit (a lease, renewed once it runs), so no fresh job can take it
 * first. Only a permit the job still held is handed on (a lapsed lease was already taken). Answers the job to wake, or
 * false.
 */
const RELEASE = `${SYNC}
local held = redis.call('ZREM', KEYS[1], ARGV[1]) == 1
local next = false
if held and ARGV[5] == 'wake' then
  local popped = redis.call('ZPOPMIN', KEYS[2])
  if popped[1] then
    next = popped[1]
    redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), next)
  end
end
sync(KEYS[1], KEYS[3], ARGV[4])
sync(KEYS[2], KEYS[4], ARGV[4])
return next
`;

/** KEYS: as ACQUIRE. ARGV: now, org id. Drops expired leases and sets the summaries exactly (for busiest()). */
const REFRESH = `${SYNC}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
sync(KEYS[1], KEYS[3], ARGV[2])
sync(KEYS[2], KEYS[4], ARGV[2])
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
`;

interface PermitCommands {
  orgPermitAcquire(...args: (string | number)[]): Promise<[number, number]>;
  orgPermitRenew(...args: (string | number)[]): Promise<number>;
  orgPermitRelease(...args: (string | number)[]): Promise<string | null>;
  orgPermitRefresh(...args: (string | number)[]): Promise<[number, number]>;
}

/** Creates the permits of one queue over a Redis client (a fail-fast one: callers decide what an outage means). */
export function createOrgPermits(opts: {
  redis: RedisClient;
  prefix: string;
  queue: string;
  leaseMs: number;
  now?: () => number;
}): OrgPermits {
  const { redis, prefix, queue, leaseMs } = opts;
  const now = opts.now ?? Date.now;
  // defineCommand: EVALSHA, with the script sent again only when the server does not have it.
  redis.defineCommand('orgPermitAcquire', { numberOfKeys: 4, lua: ACQUIRE });
  redis.defineCommand('orgPermitRenew', { numberOfKeys: 4, lua: RENEW });
  redis.defineCommand('orgPermitRelease', { numberOfKeys: 4, lua: RELEASE });
  redis.defineCommand('orgPermitRefresh', { numberOfKeys: 4, lua: REFRESH });
  const commands = redis as unknown as PermitCommands;
  const slotsSummary = `${prefix}:org-slots:${queue}`;
  const parkedSummary = `${prefix}:org-parked:${queue}`;
  const keys = (orgId: number) => [`${slotsSummary}:${orgId}`, `${parkedSummary}:${orgId}`, slotsSummary, parkedSummary];

  async function load(orgId: number): Promise<OrgLoad> {
    const [permits, parked] = keys(orgId);
    const [inFlight, waiting] = await Promise.all([redis.zcount(permits!, now(), '+inf'), redis.zcard(parked!)]);
    return { orgId, inFlight, parked: waiting };
  }

  return {
    async acquire(orgId, jobId, limit) {
      const [granted, parked] = await commands.orgPermitAcquire(...keys(orgId), jobId, limit, now(), leaseMs, orgId);
      return { granted: granted === 1, parked };
    },
    async renew(orgId, jobId) {
      return (await commands.orgPermitRenew(...keys(orgId), jobId, now(), leaseMs, orgId)) === 1;
    },
    async release(orgId, jobId, wake = true) {
      return (await commands.orgPermitRelease(...keys(orgId), jobId, now(), leaseMs, orgId, wake ? 'wake' : '')) ?? undefined;
    },
    load,
    async busiest(n) {
      // The summaries rank; each candidate is then counted exactly, its expired leases dropped and its summary entries
      // set to what is there (a crashed worker's leases leave nothing behind).
      const [running, parked] = await Promise.all([
        redis.zrevrange(slotsSummary, 0, 2 * n - 1),
        redis.zrevrange(parkedSummary, 0, 2 * n - 1),
      ]);
      const candidates = [...new Set([...running, ...parked].map(Number))];
      const loads = await Promise.all(
        candidates.map(async (orgId) => {
          const [inFlight, waiting] = await commands.orgPermitRefresh(...keys(orgId), now(), orgId);
          return { orgId, inFlight, parked: waiting };
        }),
      );
      return loads
        .filter((l) => l.inFlight + l.parked > 0)
        .sort((a, b) => b.inFlight - a.inFlight || b.parked - a.parked || a.orgId - b.orgId)
        .slice(0, n);
    },
  };
}
