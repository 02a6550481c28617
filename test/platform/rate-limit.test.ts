import { Redis } from 'ioredis';
import { expect } from 'chai';
import { RUN, createTenant, startApi, type TestApi } from '../helpers.js';

const LIMITS = { RATE_LIMIT_POINTS: '5', RATE_LIMIT_DURATION: '60', AUTH_FAILURE_LIMIT: '3', AUTH_FAILURE_WINDOW_SEC: '60' };

/** Forgets every rate-limit counter of this run, so each test starts with full windows. */
async function resetCounters(): Promise<void> {
  const redis = new Redis('redis://127.0.0.1:6379');
  try {
    const keys = await redis.keys(`${RUN}:rl:*`);
    if (keys.length) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

describe('rate limits', () => {
  let api: TestApi;
  let other: TestApi;
  before(async () => {
    api = await startApi(LIMITS);
    other = await startApi(LIMITS); // a second API process' worth of state: own caches, same Redis
  });
  beforeEach(resetCounters);
  after(async () => {
    await api.stop();
    await other.stop();
    await resetCounters();
  });

  it('allows RATE_LIMIT_POINTS requests per window per org, with RateLimit-* headers, then 429 RATE_LIMITED with Retry-After', async () => {
    const t = await createTenant(api.deps);
    const remaining: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await api.request('GET', '/org', { org: t });
      expect(res.status).to.equal(200);
      expect(res.headers.get('ratelimit-limit')).to.equal('5');
      expect(Number(res.headers.get('ratelimit-reset'))).to.be.within(1, 60);
      remaining.push(res.headers.get('ratelimit-remaining')!);
      // The current IETF draft's pair, alongside: the policy (quota per window) and the state of this window.
      expect(res.headers.get('ratelimit-policy')).to.match(/^"org";q=5;w=\d+$/);
      expect(res.headers.get('ratelimit')).to.equal(`"org";r=${4 - i};t=${res.headers.get('ratelimit-reset')}`);
    }
    expect(remaining).to.deep.equal(['4', '3', '2', '1', '0']);
    const limited = await api.request('GET', '/messages', { org: t });
    expect(limited.status).to.equal(429);
    expect(limited.body.error.code).to.equal('RATE_LIMITED');
    expect(Number(limited.headers.get('retry-after'))).to.be.within(1, 60);
    expect(limited.headers.get('ratelimit-remaining')).to.equal('0');
    expect(limited.headers.get('ratelimit')).to.match(/^"org";r=0;t=\d+$/);
    const another = await createTenant(api.deps);
    expect((await api.request('GET', '/org', { org: another })).status, 'other orgs are not affected').to.equal(200);
  });

  it('weighs POST /messages by its cost in credits', async () => {
    const t = await createTenant(api.deps);
    const threeSegments = { to: '+15551234567', channel: 'sms', body: 'a'.repeat(400) };
    const first = await api.request('POST', '/messages', { org: t, body: threeSegments });
    expect(first.status).to.equal(202);
    expect(first.headers.get('ratelimit-remaining')).to.equal('2');
    const second = await api.request('POST', '/messages', { org: t, body: threeSegments });
    expect(second.status).to.equal(429);
    expect(second.body.error.code).to.equal('RATE_LIMITED');
  });

  it('uses the org override set with PATCH /orgs/:id', async () => {
    const t = await createTenant(api.deps);
    expect(
      (await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { rateLimit: { points: 2, duration: 60 } } })).status,
    ).to.equal(200);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await api.request('GET', '/org', { org: t })).status);
    expect(statuses).to.deep.equal([200, 200, 429]);
  });

  it('holds across API processes, since they share Redis', async () => {
    const t = await createTenant(api.deps);
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await (i % 2 ? other : api).request('GET', '/org', { org: t })).status);
    expect(statuses).to.deep.equal([200, 200, 200, 200, 200, 429]);
  });

  it('a large limit, reserved in chunks by each process, still never grants more than the window across processes', async () => {
    const t = await createTenant(api.deps);
    const patch = { rateLimit: { points: 100, duration: 60 } };
    expect((await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: patch })).status).to.equal(200);
    const statuses: number[] = [];
    for (let i = 0; i < 140; i++) statuses.push((await (i % 2 ? other : api).request('GET', '/org', { org: t })).status);
    const granted = statuses.filter((s) => s === 200).length;
    // Chunks of 100 / 20 = 5: at most two chunks per process are lost when the window runs short.
    expect(granted).to.be.within(100 - 2 * 2 * 5, 100);
    expect(
      statuses.slice(granted).every((s) => s === 429),
      'once refused, refused for the rest of the window',
    ).to.equal(true);
  });

  it('after AUTH_FAILURE_LIMIT failed authentications from one IP, refuses it before checking any key — even a valid one', async () => {
    const t = await createTenant(api.deps);
    const bad = { id: t.id, apiKey: `${t.apiKey.slice(0, -1)}${t.apiKey.endsWith('A') ? 'B' : 'A'}` };
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await api.request('GET', '/org', { org: bad })).status);
    expect(statuses).to.deep.equal([401, 401, 401]);
    const refused = await api.request('GET', '/org', { org: t });
    expect(refused.status).to.equal(429);
    expect(refused.body.error.code).to.equal('RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).to.be.greaterThan(0);
    expect((await api.request('GET', '/orgs', { admin: true })).status, 'admin routes too').to.equal(429);
    // Another process shares the count: after one failure of its own it consults it and refuses too.
    expect((await other.request('GET', '/org', { org: bad })).status).to.equal(401);
    expect((await other.request('GET', '/org', { org: t })).status).to.equal(429);
  });

  it('counts probing unknown org ids as failed authentications', async () => {
    const t = await createTenant(api.deps);
    for (const id of [987651, 987652, 987653])
      expect((await api.request('GET', '/org', { org: { id, apiKey: t.apiKey } })).status).to.equal(404);
    expect((await api.request('GET', '/org', { org: t })).status).to.equal(429);
  });

  it('counts wrong admin tokens as failed authentications too', async () => {
    for (let i = 0; i < 3; i++)
      expect((await api.request('GET', '/orgs', { headers: { Authorization: 'Bearer wrong-token-xxxxxxxx' } })).status).to.equal(401);
    expect((await api.request('GET', '/orgs', { admin: true })).status).to.equal(429);
  });
});
