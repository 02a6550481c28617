/** The org registry's cache rules with a fake repository and a manual clock: TTL, negative caching, single flight, invalidation. */
import { expect } from 'chai';
import { generateApiKey } from '../../../src/platform/lib/secrets.js';
import type { ApiKeyRecord, OrgRecord } from '../../../src/orgs/domain/org.js';
import { createOrgRegistry } from '../../../src/orgs/domain/org-registry.js';
import { deferred, fakeOrg, flush, manualClock, silent } from '../fakes.js';

function fakeRepo() {
  const orgs = new Map<number, OrgRecord>();
  const keys = new Map<string, ApiKeyRecord>();
  const calls = { get: 0, findKey: 0, findKeyWithOrg: 0, touchKey: 0 };
  let gate: Promise<void> | undefined;
  let getOnly = false;
  return {
    orgs,
    keys,
    calls,
    /** Loads wait for `p`: every load, or with getOnly the org reads by id only. */
    hold(p: Promise<void>, opts: { getOnly?: boolean } = {}) {
      gate = p;
      getOnly = opts.getOnly ?? false;
    },
    repo: {
      async get(id: number) {
        calls.get++;
        if (gate) await gate;
        return orgs.get(id);
      },
      async findKey(prefix: string) {
        calls.findKey++;
        return keys.get(prefix);
      },
      async findKeyWithOrg(prefix: string) {
        calls.findKeyWithOrg++;
        if (gate && !getOnly) await gate;
        const key = keys.get(prefix);
        const org = key && orgs.get(key.orgId);
        return key && org ? { key, org } : undefined;
      },
      async touchKey() {
        calls.touchKey++;
      },
    },
  };
}

function keyFor(orgId: number, id = 1) {
  const k = generateApiKey();
  const record: ApiKeyRecord = {
    id,
    orgId,
    prefix: k.prefix,
    keyHash: k.hash,
    name: 'default',
    createdAt: new Date(0),
    lastUsedAt: null,
    revokedAt: null,
  };
  return { key: k.key, record };
}

/** Org 1 and its key in the fake repository, and a registry over it (TTL 5 s) on the given clock. */
function orgWithKey(clock = manualClock()) {
  const f = fakeRepo();
  f.orgs.set(1, fakeOrg(1));
  const { key, record } = keyFor(1);
  f.keys.set(record.prefix, record);
  return { f, key, record, clock, r: createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: clock.now }) };
}

describe('org registry (unit)', () => {
  it('serves an org from cache within the TTL and reads it again after', async () => {
    const f = fakeRepo();
    const clock = manualClock();
    f.orgs.set(1, fakeOrg(1));
    const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: clock.now });
    await r.get(1);
    await r.get(1);
    expect(f.calls.get).to.equal(1);
    clock.advance(5001);
    await r.get(1);
    expect(f.calls.get).to.equal(2);
    expect(r.stats()).to.deep.equal({ hits: 1, misses: 2 });
  });

  it('caches unknown ids too (negative caching): a flood of one bad id costs one query per TTL', async () => {
    const f = fakeRepo();
    const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
    for (let i = 0; i < 50; i++) expect(await r.get(404)).to.equal(undefined);
    expect(f.calls.get).to.equal(1);
  });

  it('concurrent misses of one id share one query (single flight)', async () => {
    const f = fakeRepo();
    f.orgs.set(1, fakeOrg(1));
    const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
    const all = await Promise.all(Array.from({ length: 30 }, () => r.get(1)));
    expect(f.calls.get).to.equal(1);
    expect(all.every((o) => o?.id === 1)).to.equal(true);
  });

  it('an invalidation during a load makes that load read again: the stale row is never cached', async () => {
    const f = fakeRepo();
    f.orgs.set(1, fakeOrg(1, { status: 'ACTIVE' }));
    const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
    const gate = deferred();
    f.hold(gate.promise);
    const loading = r.get(1);
    await flush();
    f.orgs.set(1, fakeOrg(1, { status: 'SUSPENDED' }));
    r.invalidate(1);
    gate.resolve();
    expect((await loading)?.status).to.equal('SUSPENDED');
    expect((await r.get(1))?.status).to.equal('SUSPENDED');
  });

  describe('with the change feed (ORG_CACHE_MAX_AGE_MS)', () => {
    function withFeed(live: boolean) {
      const f = fakeRepo();
      f.orgs.set(1, fakeOrg(1));
      f.orgs.set(2, fakeOrg(2));
      const { key, record } = keyFor(2);
      f.keys.set(record.prefix, record);
      const clock = manualClock();
      const feed = { live };
      const r = createOrgRegistry({
        repo: f.repo,
        ttlMs: 5000,
        maxAgeMs: 60_000,
        feedLive: () => feed.live,
        logger: silent,
        now: clock.now,
        random: () => 0, // at the max age itself (the spread has its own test)
      });
      return { f, r, clock, feed, key };
    }

    it('entries read together while the feed is live expire spread over the last quarter of the max age, not together', async () => {
      const f = fakeRepo();
      for (let id = 1; id <= 4; id++) f.orgs.set(id, fakeOrg(id));
      const clock = manualClock();
      const draws = [0, 0.5, 0.999, 0.25];
      const r = createOrgRegistry({
        repo: f.repo,
        ttlMs: 5000,
        maxAgeMs: 60_000,
        feedLive: () => true,
        logger: silent,
        now: clock.now,
        random: () => draws.shift()!,
      });
      for (let id = 1; id <= 4; id++) await r.get(id);
      // TTLs 60000, 53125, 46264 and 56563 ms: 60000 − ⌊draw × 0.25 × (60000 − 5000)⌋.
      const alive = () => [1, 2, 3, 4].filter((id) => r.peek(id) !== undefined);
      clock.advance(46_263);
      expect(alive()).to.deep.equal([1, 2, 3, 4]);
      clock.advance(2);
      expect(alive()).to.deep.equal([1, 2, 4]);
      clock.advance(53_126 - 46_265);
      expect(alive()).to.deep.equal([1, 4]);
      clock.advance(56_564 - 53_126);
      expect(alive()).to.deep.equal([1]);
      clock.advance(60_001 - 56_564);
      expect(alive()).to.deep.equal([]);
    });

    it('an org and a key read while the feed was live stay ORG_CACHE_MAX_AGE_MS, not ORG_CACHE_TTL_MS', async () => {
      const { f, r, clock, key } = withFeed(true);
      await r.get(1);
      await r.getWithKey(2, key); // the joined read of an org and its key
      clock.advance(59_000);
      expect(r.peek(1)?.id).to.equal(1);
      expect(r.peek(2)?.id).to.equal(2);
      expect(r.peekKey(key)?.orgId).to.equal(2);
      expect(f.calls).to.include({ get: 1, findKeyWithOrg: 1, findKey: 0 });
      clock.advance(1001);
      expect(r.peek(1)).to.equal(undefined);
      expect(r.peekKey(key)).to.equal(undefined);
    });

    it('read while the feed was not live, or while it went live only during the read: ORG_CACHE_TTL_MS', async () => {
      const { f, r, clock, feed } = withFeed(false);
      await r.get(1);
      const gate = deferred();
      f.hold(gate.promise);
      const loading = r.get(2);
      await flush();
      feed.live = true; // changes made before now may have been missed: the row read may be one of them
      gate.resolve();
      await loading;
      clock.advance(5001);
      expect(r.peek(1)).to.equal(undefined);
      expect(r.peek(2)).to.equal(undefined);
    });

    it('a read during which the feed was lost gets ORG_CACHE_TTL_MS', async () => {
      const { f, r, clock, feed } = withFeed(true);
      const gate = deferred();
      f.hold(gate.promise);
      const loading = r.get(1);
      await flush();
      feed.live = false;
      gate.resolve();
      await loading;
      clock.advance(5001);
      expect(r.peek(1)).to.equal(undefined);
    });

    it('invalidateAll (the feed lost) drops every org and key, and a read in flight reads again', async () => {
      const { f, r, key } = withFeed(true);
      await r.get(1);
      await r.getWithKey(2, key);
      const gate = deferred();
      f.hold(gate.promise, { getOnly: true });
      f.orgs.set(3, fakeOrg(3, { status: 'ACTIVE' }));
      const loading = r.get(3);
      await flush();
      f.orgs.set(3, fakeOrg(3, { status: 'SUSPENDED' }));
      r.invalidateAll();
      gate.resolve();
      expect((await loading)?.status).to.equal('SUSPENDED');
      expect(r.peek(1)).to.equal(undefined);
      expect(r.peek(2)).to.equal(undefined);
      expect(r.peekKey(key)).to.equal(undefined);
    });
  });

  it('with ORG_CACHE_TTL_MS=0 every lookup reads the database', async () => {
    const f = fakeRepo();
    f.orgs.set(1, fakeOrg(1));
    const r = createOrgRegistry({ repo: f.repo, ttlMs: 0, logger: silent });
    await r.get(1);
    await r.get(1);
    expect(f.calls.get).to.equal(2);
  });

  describe('getWithKey', () => {
    it("reads an uncached org and its key in one statement; the key's check then costs nothing", async () => {
      const f = fakeRepo();
      const clock = manualClock();
      f.orgs.set(1, fakeOrg(1));
      const { key, record } = keyFor(1);
      f.keys.set(record.prefix, record);
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: clock.now });
      expect((await r.getWithKey(1, key))?.id).to.equal(1);
      expect((await r.verifyKey(key))?.orgId).to.equal(1);
      expect(await r.getWithKey(1, key)).to.include({ id: 1 });
      expect(f.calls).to.include({ findKeyWithOrg: 1, get: 0, findKey: 0 });
      clock.advance(5001); // both expired: one joined read again
      await r.getWithKey(1, key);
      expect(f.calls).to.include({ findKeyWithOrg: 2, get: 0 });
    });

    it("answers the org asked for, never the key's own org: another org's key reads the org alone (403 follows)", async () => {
      const f = fakeRepo();
      f.orgs.set(1, fakeOrg(1));
      f.orgs.set(2, fakeOrg(2));
      const other = keyFor(2);
      f.keys.set(other.record.prefix, other.record);
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
      expect((await r.getWithKey(1, other.key))?.id).to.equal(1);
      expect(f.calls).to.include({ findKeyWithOrg: 1, get: 1 });
      expect((await r.verifyKey(other.key))?.orgId, 'the key was cached by the joined read').to.equal(2);
      expect(f.calls.findKey).to.equal(0);
    });

    it('an unknown key, a malformed one or none: the org is read alone, and nothing about the key is trusted', async () => {
      const f = fakeRepo();
      f.orgs.set(1, fakeOrg(1));
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
      expect((await r.getWithKey(1, keyFor(1).key))?.id).to.equal(1);
      expect(await r.getWithKey(2, 'not-a-key')).to.equal(undefined);
      expect((await r.getWithKey(1, undefined))?.id).to.equal(1);
      expect(f.calls).to.include({ findKeyWithOrg: 1, get: 2 });
    });

    it('an org read in flight when a joined read caches the org ends with it, not with an error (a burst of first requests)', async () => {
      const { f, key, r } = orgWithKey();
      const gate = deferred<void>();
      f.hold(gate.promise, { getOnly: true });
      const plain = r.get(1); // e.g. a request without a key, or a worker
      await flush();
      expect((await r.getWithKey(1, key))?.id).to.equal(1);
      gate.resolve();
      expect((await plain)?.id).to.equal(1);
    });

    it('caches nothing read across an invalidation (the org changed meanwhile)', async () => {
      const { f, key, r } = orgWithKey();
      const gate = deferred<void>();
      f.hold(gate.promise);
      const loading = r.getWithKey(1, key);
      await flush();
      f.orgs.set(1, { ...fakeOrg(1), status: 'SUSPENDED' });
      r.invalidate(1);
      gate.resolve();
      expect((await loading)?.status, 'read again after the invalidation').to.equal('SUSPENDED');
      expect((await r.get(1))?.status).to.equal('SUSPENDED');
    });
  });

  describe('verifyKey', () => {
    it('accepts the exact key, refuses a wrong secret with the right prefix, a malformed key and a revoked key', async () => {
      const f = fakeRepo();
      const { key, record } = keyFor(1);
      f.keys.set(record.prefix, record);
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
      expect((await r.verifyKey(key))?.orgId).to.equal(1);
      expect(await r.verifyKey(`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`)).to.equal(undefined);
      expect(await r.verifyKey('not-a-key')).to.equal(undefined);
      f.keys.set(record.prefix, { ...record, revokedAt: new Date() });
      expect((await r.verifyKey(key))?.orgId, 'cached until invalidated').to.equal(1);
      r.invalidate(1);
      expect(await r.verifyKey(key)).to.equal(undefined);
    });

    it("invalidating one org drops its keys and every negative entry, not other orgs' keys", async () => {
      const f = fakeRepo();
      const a = keyFor(1, 1);
      const b = keyFor(2, 2);
      f.keys.set(a.record.prefix, a.record);
      f.keys.set(b.record.prefix, b.record);
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
      await r.verifyKey(a.key);
      await r.verifyKey(b.key);
      expect(f.calls.findKey).to.equal(2);
      r.invalidate(1);
      await r.verifyKey(a.key);
      await r.verifyKey(b.key);
      expect(f.calls.findKey).to.equal(3);
    });

    it('records last use at most every 15 minutes per key', async () => {
      const f = fakeRepo();
      const clock = manualClock();
      const { key, record } = keyFor(1);
      f.keys.set(record.prefix, record);
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 3_600_000, logger: silent, now: clock.now });
      for (let i = 0; i < 5; i++) await r.verifyKey(key);
      expect(f.calls.touchKey).to.equal(1);
      clock.advance(14 * 60_000);
      await r.verifyKey(key);
      expect(f.calls.touchKey, 'within 15 minutes').to.equal(1);
      clock.advance(60_001);
      await r.verifyKey(key);
      expect(f.calls.touchKey).to.equal(2);
    });
  });

  describe('peek and peekKey (the hot path without a promise)', () => {
    it('answer only what is cached and fresh, and for a key only what verifyKey would accept', async () => {
      const { f, key, record, clock, r } = orgWithKey();
      expect(r.peek(1), 'nothing read yet').to.equal(undefined);
      expect(r.peekKey(key)).to.equal(undefined);
      expect(f.calls.get + f.calls.findKey + f.calls.findKeyWithOrg, 'a peek never reads').to.equal(0);
      await r.getWithKey(1, key);
      expect(r.peek(1)?.id).to.equal(1);
      expect(r.peekKey(key)?.id).to.equal(record.id);
      expect(r.peekKey(`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`), 'a wrong secret with a cached prefix').to.equal(undefined);
      expect(r.peekKey('not-a-key')).to.equal(undefined);
      expect(r.stats().hits).to.equal(3);
      clock.advance(5001);
      expect(r.peek(1), 'past the TTL').to.equal(undefined);
      expect(r.peekKey(key)).to.equal(undefined);
    });

    it('answer nothing for an unknown org, a revoked key or after an invalidation (the async checks refuse them)', async () => {
      const f = fakeRepo();
      const { key, record } = keyFor(1);
      f.keys.set(record.prefix, { ...record, revokedAt: new Date() });
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent, now: manualClock().now });
      expect(await r.get(404)).to.equal(undefined);
      expect(r.peek(404), 'known missing is not an answer').to.equal(undefined);
      expect(await r.verifyKey(key)).to.equal(undefined);
      expect(r.peekKey(key), 'revoked').to.equal(undefined);
      f.orgs.set(1, fakeOrg(1));
      await r.get(1);
      r.invalidate(1);
      expect(r.peek(1)).to.equal(undefined);
    });

    it('record last use like verifyKey, at most every 15 minutes per key', async () => {
      const f = fakeRepo();
      const clock = manualClock();
      const { key, record } = keyFor(1);
      f.keys.set(record.prefix, record);
      const r = createOrgRegistry({ repo: f.repo, ttlMs: 3_600_000, logger: silent, now: clock.now });
      await r.verifyKey(key);
      for (let i = 0; i < 5; i++) expect(r.peekKey(key)?.id).to.equal(record.id);
      expect(f.calls.touchKey).to.equal(1);
      clock.advance(14 * 60_000);
      r.peekKey(key);
      expect(f.calls.touchKey, 'within 15 minutes').to.equal(1);
      clock.advance(60_001);
      r.peekKey(key);
      expect(f.calls.touchKey).to.equal(2);
    });
  });

  it('answers a fresh read when every load is invalidated before it ends (a burst of org events), never an error', async () => {
    const f = fakeRepo();
    f.orgs.set(1, fakeOrg(1));
    const r = createOrgRegistry({ repo: f.repo, ttlMs: 5000, logger: silent });
    let gate = deferred();
    f.hold(gate.promise);
    const answer = r.get(1);
    // Each load is invalidated while it is still running, more times than the cache retries.
    for (let i = 0; i < 5; i++) {
      await flush();
      r.invalidate(1);
      const next = deferred();
      gate.resolve();
      gate = next;
      f.hold(gate.promise);
    }
    gate.resolve();
    f.hold(Promise.resolve());
    expect((await answer)?.id).to.equal(1);
  });
});
