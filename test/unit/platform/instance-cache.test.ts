/** The tenant pool cache's rules, with a fake `open` (no database): bound, LRU, leases, single flight, failures. */
import { expect } from 'chai';
import type { AppError } from '../../../src/platform/lib/errors.js';
import { createInstanceCache, type Closable, type InstanceCacheOptions } from '../../../src/platform/tenant-connections/instance-cache.js';
import { deferred, fakeOrg, flush, silent } from '../fakes.js';

interface FakePool {
  orgId: number;
  closed: boolean;
}

function harness(over: Partial<InstanceCacheOptions<Closable>> = {}) {
  const opened: FakePool[] = [];
  let failNext: Error | undefined;
  const cache = createInstanceCache({
    maxOpen: 2,
    idleMs: 60_000,
    acquireTimeoutMs: 200,
    retryAfterMs: 60_000,
    logger: silent,
    async open(org) {
      if (failNext) {
        const err = failNext;
        failNext = undefined;
        throw err;
      }
      const pool: FakePool = { orgId: org.id, closed: false };
      opened.push(pool);
      return { close: async () => void (pool.closed = true) };
    },
    ...over,
  });
  const live = () => opened.filter((p) => !p.closed).map((p) => p.orgId);
  return { cache, opened, live, failOnce: (e: Error) => (failNext = e) };
}

describe('tenant pool cache (unit)', () => {
  it('concurrent first requests for one tenant share one open', async () => {
    const h = harness();
    await Promise.all(Array.from({ length: 20 }, () => h.cache.withTenant(fakeOrg(1), async () => undefined)));
    expect(h.opened).to.have.length(1);
    expect(h.cache.stats()).to.include({ misses: 1, hits: 19, open: 1 });
    await h.cache.close();
  });

  it('never holds more than maxOpen pools: the least recently used idle pool is closed first', async () => {
    const h = harness();
    for (const id of [1, 2, 1, 3]) await h.cache.withTenant(fakeOrg(id), async () => undefined);
    await flush();
    expect(h.live().sort()).to.deep.equal([1, 3]); // 2 was least recently used
    expect(h.cache.stats()).to.include({ open: 2, evictions: 1 });
    await h.cache.close();
  });

  it('a leased pool is never closed: a third tenant waits for a lease to end, then takes its slot', async () => {
    const h = harness({ acquireTimeoutMs: 5_000 });
    const hold1 = deferred();
    const hold2 = deferred();
    const a = h.cache.withTenant(fakeOrg(1), () => hold1.promise);
    const b = h.cache.withTenant(fakeOrg(2), () => hold2.promise);
    await flush();
    let third = false;
    const c = h.cache.withTenant(fakeOrg(3), async () => void (third = true));
    await flush();
    expect(third, 'waits while both pools are leased').to.equal(false);
    expect(h.live().sort()).to.deep.equal([1, 2]);
    hold1.resolve();
    await Promise.all([a, c]);
    expect(third).to.equal(true);
    expect(h.opened.find((p) => p.orgId === 1)!.closed).to.equal(true);
    expect(h.opened.find((p) => p.orgId === 2)!.closed, 'still leased').to.equal(false);
    hold2.resolve();
    await b;
    await h.cache.close();
  });

  it('answers 503 TENANT_CAPACITY when every slot stays leased past the acquire timeout', async () => {
    const h = harness({ acquireTimeoutMs: 30 });
    const hold = deferred();
    const leases = [1, 2].map((id) => h.cache.withTenant(fakeOrg(id), () => hold.promise));
    const err = (await h.cache.withTenant(fakeOrg(3), async () => 'no').catch((e: unknown) => e)) as AppError;
    expect(err).to.include({ code: 'TENANT_CAPACITY', status: 503 });
    hold.resolve();
    await Promise.all(leases);
    await h.cache.close();
  });

  it('a tenant whose database cannot be reached answers 503 TENANT_DB_UNAVAILABLE, remembered for retryAfterMs without another attempt', async () => {
    const h = harness();
    h.failOnce(new Error('ECONNREFUSED'));
    const first = (await h.cache.withTenant(fakeOrg(1), async () => 'no').catch((e: unknown) => e)) as AppError;
    expect(first).to.include({ code: 'TENANT_DB_UNAVAILABLE', status: 503 });
    const second = (await h.cache.withTenant(fakeOrg(1), async () => 'no').catch((e: unknown) => e)) as AppError;
    expect(second).to.include({ code: 'TENANT_DB_UNAVAILABLE' });
    expect(h.opened, 'no second attempt').to.have.length(0);
    expect(await h.cache.withTenant(fakeOrg(2), async () => 'other tenants unaffected')).to.equal('other tenants unaffected');
    h.cache.evict(1); // an org event clears the memory of the failure
    expect(await h.cache.withTenant(fakeOrg(1), async () => 'back')).to.equal('back');
    expect(h.cache.stats().failures).to.equal(1);
    await h.cache.close();
  });

  it('a changed password or server opens a new pool and closes the old one once its lease ends', async () => {
    const h = harness();
    const hold = deferred();
    const old = h.cache.withTenant(fakeOrg(1), () => hold.promise);
    await flush();
    await h.cache.withTenant(fakeOrg(1, { dbPasswordEnc: 'rotated' }), async () => undefined);
    expect(h.opened).to.have.length(2);
    expect(h.opened[0]!.closed, 'leased: still open').to.equal(false);
    hold.resolve();
    await old;
    await flush();
    expect(h.opened[0]!.closed).to.equal(true);
    await h.cache.close();
  });

  it('close() waits for the leases in flight, then closes every pool; later requests get 503 SHUTTING_DOWN', async () => {
    const h = harness();
    const hold = deferred();
    const lease = h.cache.withTenant(fakeOrg(1), () => hold.promise);
    await flush();
    let closed = false;
    const closing = h.cache.close().then(() => void (closed = true));
    await flush();
    expect(closed).to.equal(false);
    hold.resolve();
    await Promise.all([lease, closing]);
    expect(h.live()).to.deep.equal([]);
    const err = (await h.cache.withTenant(fakeOrg(2), async () => 'no').catch((e: unknown) => e)) as AppError;
    expect(err).to.include({ code: 'SHUTTING_DOWN', status: 503 });
  });
});
