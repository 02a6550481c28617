/** A Cluster client closed on purpose starts no slots refresh, so ioredis cannot re-arm its refresh timer after close. */
import { expect } from 'chai';
import { createRedis } from '../../../src/platform/lib/redis.js';

describe('Cluster client closed on purpose (unit, never connected)', () => {
  it('refreshes slots neither on its own nor for a caller once disconnect() was called', async () => {
    const client = createRedis({ redisUrl: 'redis://127.0.0.1:6379', redisClusterNodes: ['127.0.0.1:1'] }, 'producer', {
      lazyConnect: true,
    });
    const internals = client as unknown as { refreshSlotsCache(cb?: () => void): void; isRefreshing?: boolean };
    client.disconnect();
    let called = false;
    internals.refreshSlotsCache(() => (called = true));
    await new Promise((r) => setImmediate(r));
    expect(internals.isRefreshing, 'no refresh started').to.not.equal(true);
    expect(called, 'no next round scheduled by the callback').to.equal(false);
  });
});
