import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { redisSettingProblems } from '../../src/platform/queue/redis-check.js';
import { freePort } from '../../scripts/free-port.js';
import { createTenant, eventually, startApi, testDeps, type TestApi } from '../helpers.js';
import { startRedis, stopRedis } from '../processes.js';

describe('Redis stopped while the API runs', () => {
  let port: number;
  let redis: ChildProcess;
  let api: TestApi;
  before(async () => {
    port = await freePort();
    redis = await startRedis(port);
    api = await startApi({ REDIS_URL: `redis://127.0.0.1:${port}`, RATE_LIMIT_POINTS: '5', RATE_LIMIT_DURATION: '60' });
  });
  after(async () => {
    await api.stop();
    if (redis.exitCode === null) await stopRedis(redis);
  });

  it('keeps serving tenant reads, answers 503 for sends and in /ready, limits with the insurance limiter, and recovers without a restart', async function () {
    this.timeout(60_000);
    const admin = testDeps({}, { subscribe: false });
    const t = await createTenant(admin);
    const limitedOrg = await createTenant(admin);
    await admin.close();
    expect(
      (await api.request('POST', '/messages', { org: t, body: { to: '+15551234567', channel: 'sms', body: 'before' } })).status,
    ).to.equal(202);

    await stopRedis(redis);

    expect((await api.request('GET', '/org', { org: t })).status, 'GET /org').to.equal(200);
    const list = await api.request('GET', '/messages', { org: t });
    expect(list.status).to.equal(200);
    expect(list.body).to.have.length(1);
    const send = await api.request('POST', '/messages', { org: t, body: { to: '+15551234567', channel: 'sms', body: 'during' } });
    expect(send.status).to.equal(503);
    expect(send.body.error.code).to.equal('QUEUE_UNAVAILABLE');
    const ready = await api.request('GET', '/ready');
    expect(ready.status).to.equal(503);
    expect(ready.body.checks.sharedDb).to.equal('ok');
    expect(ready.body.checks.redis).to.match(/^unavailable/);
    // The in-memory insurance limiter takes over: limits still hold, no 500.
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await api.request('GET', '/org', { org: limitedOrg })).status);
    expect(statuses).to.deep.equal([200, 200, 200, 200, 200, 429]);

    redis = await startRedis(port);
    expect(await eventually(async () => (await api.request('GET', '/ready')).status === 200, 20_000, 100), '/ready recovers').to.equal(
      true,
    );
    expect(
      await eventually(
        async () =>
          (await api.request('POST', '/messages', { org: t, body: { to: '+15551234567', channel: 'sms', body: 'after' } })).status === 202,
        20_000,
        100,
      ),
      'sends recover',
    ).to.equal(true);
  });
});

describe('the Redis settings check at start-up', () => {
  it('warns unless maxmemory-policy is noeviction', async () => {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--maxmemory-policy', 'allkeys-lru'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('Ready to accept')) resolve();
      }),
    );
    const lru = new Redis(`redis://127.0.0.1:${port}`);
    try {
      expect((await redisSettingProblems(lru)).join()).to.match(/allkeys-lru.*noeviction/);
      await lru.config('SET', 'maxmemory-policy', 'noeviction');
      expect(await redisSettingProblems(lru)).to.deep.equal([]);
    } finally {
      lru.disconnect();
      await stopRedis(child);
    }
  });
});
