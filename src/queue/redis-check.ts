/** Start-up check of the Redis settings BullMQ needs: evicting keys would silently lose jobs. */
import type { Redis } from 'ioredis';

/** Problems with the Redis settings (empty when all is well or Redis cannot be asked). */
export async function redisSettingProblems(redis: Redis): Promise<string[]> {
  const reply = (await redis.config('GET', 'maxmemory-policy').catch(() => [])) as string[];
  const policy = reply[1];
  if (policy === undefined || policy === 'noeviction') return [];
  return [`Redis maxmemory-policy is "${policy}": under memory pressure Redis will EVICT QUEUED JOBS. Set maxmemory-policy noeviction.`];
}
