/** Start-up check of the Redis settings BullMQ needs: evicting keys would silently lose jobs. */
import { everyMaster, type RedisClient } from '../lib/redis.js';

/** Problems with the Redis settings, of every master of a cluster (empty when all is well or Redis cannot be asked). */
export async function redisSettingProblems(redis: RedisClient): Promise<string[]> {
  const masters = await everyMaster(redis);
  if (!masters.length) return ['Redis Cluster: no master known yet, so maxmemory-policy could not be checked (it must be noeviction).'];
  const problems: string[] = [];
  for (const node of masters) {
    const reply = (await node.config('GET', 'maxmemory-policy').catch(() => [])) as string[];
    const policy = reply[1];
    if (policy === undefined || policy === 'noeviction') continue;
    const where = redis === node ? 'Redis' : `Redis ${node.options.host}:${node.options.port}`;
    problems.push(
      `${where} maxmemory-policy is "${policy}": under memory pressure Redis will EVICT QUEUED JOBS. Set maxmemory-policy noeviction.`,
    );
  }
  return problems;
}
