/**
 * The org cache over the change feed (src/orgs/domain/org-events.ts, org-registry.ts): while the subscriber's
 * connection answers its heartbeat, a cached org and key stay ORG_CACHE_MAX_AGE_MS and a change made by another
 * process takes effect at once; when the connection is cut or Redis stops answering, the feed is lost within
 * ORG_CACHE_TTL_MS / 2 and whatever was kept past the TTL is read again; a change made by a process that cannot reach
 * Redis reaches the others through the shared DB's change log. A Redis server of the test's own, real faults (CLIENT
 * KILL of the subscriber, the server frozen with SIGSTOP, a CLI pointed at a closed port).
 */
import type { ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { freePort } from '../../scripts/free-port.js';
import { createOrgChangeLog } from '../../src/orgs/data-access/org-change-log.js';
import { createOrgEvents, type OrgChange, type OrgChangeLog } from '../../src/orgs/domain/org-events.js';
import { createLogger } from '../../src/platform/lib/logger.js';
import { cli, createTenant, eventually, startApi, testConfig, type TestApi } from '../helpers.js';
import { startRedis, stopRedis } from '../processes.js';

/** ORG_CACHE_TTL_MS=200: the subscriber is pinged every 50 ms, and the feed is lost 100 ms after its last answer. */
const TTL_MS = 200;
const olderThanTtl = () => new Promise((r) => setTimeout(r, 3 * TTL_MS));

describe('the org cache over the change feed (ORG_CACHE_MAX_AGE_MS)', () => {
  let redis: ChildProcess;
  let url: string;
  let api: TestApi;
  let admin: Redis;
  /** What the API's org events handed its caches, and how often its feed was lost. */
  const changes: OrgChange[] = [];
  let losses = 0;
  before(async () => {
    const port = await freePort();
    redis = await startRedis(port);
    url = `redis://127.0.0.1:${port}`;
    api = await startApi({ REDIS_URL: url, ORG_CACHE_TTL_MS: String(TTL_MS) });
    admin = new Redis(url, { lazyConnect: true });
    await admin.connect();
    expect(await eventually(async () => api.deps.events.live())).to.equal(true);
    api.deps.events.onChange((c) => changes.push(c));
    api.deps.events.onLost(() => losses++);
  });
  after(async () => {
    admin.disconnect();
    await api.stop();
    await stopRedis(redis);
  });

  /** A tenant whose org and key this process has cached longer than ORG_CACHE_TTL_MS ago. */
  async function cachedPastTtl() {
    const t = await createTenant(api.deps);
    expect((await api.request('GET', '/org', { org: t })).status).to.equal(200);
    await olderThanTtl();
    expect(api.deps.registry.peek(t.id)?.id).to.equal(t.id);
    return t;
  }

  it('keeps an org and its key past ORG_CACHE_TTL_MS while the feed is live; a key revoked by another process is refused at once', async () => {
    const t = await cachedPastTtl();
    const misses = api.deps.registry.stats().misses;
    expect((await api.request('GET', '/org', { org: t })).status).to.equal(200);
    expect(api.deps.registry.stats().misses, 'served from the cache').to.equal(misses);
    const revoked = await cli(['keys', 'revoke', String(t.id), t.apiKey.split('_')[1]!], { REDIS_URL: url });
    expect(revoked.code, revoked.stderr).to.equal(0);
    expect(await eventually(async () => (await api.request('GET', '/org', { org: t })).status === 401, 1000, 10)).to.equal(true);
  });

  it('a key revoked by a process that cannot reach Redis is refused within about a second: the change goes through the shared DB change log', async () => {
    const t = await cachedPastTtl();
    const fromLog = api.deps.events.stats().fromLog;
    const lossesBefore = losses;
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    const revoked = await cli(['keys', 'revoke', String(t.id), t.apiKey.split('_')[1]!], { REDIS_URL: nowhere, LOG_LEVEL: 'warn' });
    expect(revoked.code, revoked.stderr).to.equal(0);
    expect(revoked.stderr).to.match(/publish failed; the change is in the shared DB change log/);
    expect(await eventually(async () => (await api.request('GET', '/org', { org: t })).status === 401, 2000, 10)).to.equal(true);
    expect(changes).to.deep.include({ orgId: t.id, reason: 'key-revoked' });
    expect(losses, 'through the log, not a lost feed').to.equal(lossesBefore);
    expect(api.deps.events.live()).to.equal(true);
    expect(api.deps.events.stats().fromLog).to.be.greaterThan(fromLog);
    const metrics = await api.request('GET', '/metrics', { admin: true });
    expect(metrics.body as string).to.match(/^org_changes_from_log_total [1-9]/m);
  });

  it('the change log keeps an hour: logging a change removes the older rows, and a read of the window answers the new one only', async () => {
    const log = createOrgChangeLog(api.deps.sharedDb);
    await api.deps.sharedDb.query(
      "INSERT INTO org_changes (org_id, reason, created_at) VALUES (999999, 'old', CURRENT_TIMESTAMP(3) - INTERVAL 61 MINUTE)",
    );
    await log.record({ orgId: 999998, reason: 'x'.repeat(40) }); // longer than the column: cut to its 32 characters
    const [rows] = await api.deps.sharedDb.query('SELECT org_id, reason FROM org_changes WHERE org_id IN (999998, 999999)');
    expect(rows).to.deep.equal([{ org_id: 999998, reason: 'x'.repeat(32) }]);
    const recent = await log.recent(10_000);
    expect(recent.filter((c) => c.orgId >= 999998).map((c) => c.orgId)).to.deep.equal([999998]);
  });

  it('the subscriber connection cut (CLIENT KILL): the feed is lost, what was kept past the TTL is read again, and the feed comes back', async () => {
    const t = await cachedPastTtl();
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    expect(await eventually(async () => api.deps.registry.peek(t.id) === undefined, 1000, 5)).to.equal(true);
    const misses = api.deps.registry.stats().misses;
    expect((await api.request('GET', '/org', { org: t })).status).to.equal(200);
    expect(api.deps.registry.stats().misses).to.be.greaterThan(misses);
    expect(await eventually(async () => api.deps.events.live())).to.equal(true);
  });

  it('Redis frozen (SIGSTOP): the feed is lost and the cache drops what it kept longer than ORG_CACHE_TTL_MS; live again once it answers', async () => {
    const t = await cachedPastTtl();
    redis.kill('SIGSTOP');
    try {
      expect(await eventually(async () => api.deps.registry.peek(t.id) === undefined, 1000, 5)).to.equal(true);
      expect(api.deps.events.live()).to.equal(false);
    } finally {
      redis.kill('SIGCONT');
    }
    expect(await eventually(async () => api.deps.events.live(), 3000)).to.equal(true);
    expect((await api.request('GET', '/org', { org: t })).status).to.equal(200);
  });
});

describe('the change log read by org events (faults of the log itself)', () => {
  const silent = createLogger({ level: 'silent' });
  const config = testConfig();
  const opened: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const e of opened) await e.close();
  });
  /** Org events over this run's Redis, reading `log` every 50 ms. */
  function eventsOver(log: OrgChangeLog) {
    const events = createOrgEvents({ redis: config, prefix: `${config.queuePrefix}-log`, logger: silent, heartbeatMs: 50, log });
    opened.push(events);
    const changes: OrgChange[] = [];
    let losses = 0;
    events.onChange((c) => changes.push(c));
    events.onLost(() => losses++);
    return { events, changes, losses: () => losses };
  }

  it('a read that hangs is given up after two heartbeats (at least 1 s), and the next read handles what was logged meanwhile', async () => {
    let reads = 0;
    const log: OrgChangeLog = {
      limit: 100,
      record: () => Promise.resolve(1),
      recent: () => (++reads === 1 ? new Promise(() => undefined) : Promise.resolve([{ id: 1, orgId: 7, reason: 'key-revoked' }])),
    };
    const { events, changes } = eventsOver(log);
    expect(await eventually(async () => changes.some((c) => c.orgId === 7), 3000)).to.equal(true);
    expect(events.stats().logReadFailures).to.equal(1);
    expect(
      changes.filter((c) => c.orgId === 7),
      'handled once',
    ).to.have.length(1);
  });

  it('a read that fills its page drops every cached org and key (newer changes may be past it)', async () => {
    const rows = [
      { id: 1, orgId: 1, reason: 'a' },
      { id: 2, orgId: 2, reason: 'b' },
    ];
    const { losses } = eventsOver({ limit: 2, record: () => Promise.resolve(3), recent: () => Promise.resolve(rows) });
    expect(await eventually(async () => losses() > 0, 2000)).to.equal(true);
  });
});
