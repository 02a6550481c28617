import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { expect } from 'chai';
import { RUN, ROOT, createTenant, rows, startApi, type TestApi } from '../helpers.js';

const LIMITS = { AUTH_FAILURE_LIMIT: '3', AUTH_FAILURE_WINDOW_SEC: '60' };
const WRONG_TOKEN = { Authorization: 'Bearer wrong-token-xxxxxxxx' };

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

/** GET /orgs as an admin (or with a wrong token) through a proxy that sent this X-Forwarded-For. */
async function listOrgs(api: TestApi, forwardedFor: string, opts: { wrongToken?: boolean } = {}): Promise<number> {
  const headers = { 'X-Forwarded-For': forwardedFor, ...(opts.wrongToken ? WRONG_TOKEN : {}) };
  return (await api.request('GET', '/orgs', { admin: !opts.wrongToken, headers })).status;
}

describe('hardening: client address behind proxies (TRUST_PROXY hops)', () => {
  const apis: TestApi[] = [];
  const start = async (trustProxy: string) => {
    const api = await startApi({ ...LIMITS, TRUST_PROXY: trustProxy });
    apis.push(api);
    return api;
  };
  beforeEach(resetCounters);
  after(async () => {
    for (const api of apis) await api.stop();
    await resetCounters();
  });

  it('with TRUST_PROXY=1, a client prepending a fresh fake X-Forwarded-For entry to every attempt is still refused after AUTH_FAILURE_LIMIT failures', async () => {
    const api = await start('1');
    // Our one proxy appends the address it saw (198.51.100.7); what comes before it is whatever the client sent.
    const statuses = [];
    for (let i = 1; i <= 3; i++) statuses.push(await listOrgs(api, `203.0.113.${i}, 198.51.100.7`, { wrongToken: true }));
    expect(statuses).to.deep.equal([401, 401, 401]);
    expect(await listOrgs(api, '192.0.2.99, 198.51.100.7'), 'even the valid token, with yet another fake entry').to.equal(429);
    expect(await listOrgs(api, '198.51.100.7')).to.equal(429);
    expect(await listOrgs(api, '198.51.100.8'), 'another client is not affected').to.equal(200);
  });

  it('with TRUST_PROXY=1, a client naming another address in X-Forwarded-For cannot get that address locked out', async () => {
    const api = await start('1');
    const victim = '198.51.100.20';
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push(await listOrgs(api, `${victim}, 198.51.100.21`, { wrongToken: true }));
    expect(statuses, 'the attacker locks out only itself').to.deep.equal([401, 401, 401, 429]);
    expect(await listOrgs(api, victim)).to.equal(200);
  });

  it('with TRUST_PROXY=2, the address is the second entry from the right (what the first proxy saw)', async () => {
    const api = await start('2');
    // client → CDN (appends the client, 198.51.100.30) → load balancer (appends the CDN, 10.0.0.2) → API.
    for (let i = 1; i <= 3; i++) expect(await listOrgs(api, `203.0.113.${i}, 198.51.100.30, 10.0.0.2`, { wrongToken: true })).to.equal(401);
    expect(await listOrgs(api, '192.0.2.1, 198.51.100.30, 10.0.0.2')).to.equal(429);
    expect(await listOrgs(api, '198.51.100.31, 10.0.0.2'), 'another client behind the same proxies').to.equal(200);
  });

  it('with TRUST_PROXY=0 (the default), X-Forwarded-For is ignored: failures count against the socket address whatever the header says', async () => {
    const api = await start('0');
    for (let i = 1; i <= 3; i++) expect(await listOrgs(api, `203.0.113.${i}`, { wrongToken: true })).to.equal(401);
    expect(await listOrgs(api, '198.51.100.50')).to.equal(429);
  });

  it('accepts the former boolean TRUST_PROXY=true as one hop', async () => {
    const api = await start('true');
    for (let i = 1; i <= 3; i++) expect(await listOrgs(api, `203.0.113.${i}, 198.51.100.60`, { wrongToken: true })).to.equal(401);
    expect(await listOrgs(api, '192.0.2.1, 198.51.100.60')).to.equal(429);
    expect(await listOrgs(api, '198.51.100.61')).to.equal(200);
  });
});

describe('hardening: long Idempotency-Keys on POST /orgs/:id/credits', () => {
  let api: TestApi;
  before(async () => {
    api = await startApi();
  });
  after(() => api.stop());

  const grant = (id: number, key: string, amount: number) =>
    api.request('POST', `/orgs/${id}/credits`, { admin: true, headers: { 'Idempotency-Key': key }, body: { amount } });
  const references = async (id: number) =>
    (
      await rows<{ reference: string }>(
        api.deps.sharedDb,
        "SELECT reference FROM credit_ledger WHERE org_id = :id AND kind = 'grant' AND reference <> 'initial-grant' ORDER BY id",
        { id },
      )
    ).map((r) => r.reference);

  it('answers 200 to a 250-character Idempotency-Key (not 500), and the exact same key replays', async () => {
    const t = await createTenant(api.deps, { credits: 0 });
    const key = `invoice-${'x'.repeat(242)}`;
    expect(key).to.have.length(250);
    const first = await grant(t.id, key, 40);
    expect(first.status).to.equal(200);
    expect(first.headers.get('idempotency-replay')).to.equal(null);
    expect(first.body.org.creditBalance).to.equal(40);
    const hashed = `sha256:${createHash('sha256').update(`admin:${key}`).digest('hex')}`;
    expect(first.body.entry).to.include({ kind: 'grant', amount: 40, reference: hashed });

    const replay = await grant(t.id, key, 40);
    expect(replay.status).to.equal(200);
    expect(replay.headers.get('idempotency-replay')).to.equal('true');
    expect(replay.body.entry.id).to.equal(first.body.entry.id);
    expect(replay.body.org.creditBalance).to.equal(40);

    const reused = await grant(t.id, key, 41);
    expect(reused.status).to.equal(422);
    expect(reused.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
    const other = await grant(t.id, `${key.slice(0, -1)}y`, 40);
    expect(other.headers.get('idempotency-replay'), 'a key differing in its last character is another grant').to.equal(null);
    expect(other.body.org.creditBalance).to.equal(80);
  });

  it('stores keys of up to 185 characters as they are (`admin:` + key fills the 191-character reference), longer ones (up to 255) hashed', async () => {
    const t = await createTenant(api.deps, { credits: 0 });
    const fits = 'a'.repeat(185);
    const longest = 'c'.repeat(255);
    for (const key of [fits, 'b'.repeat(186), longest])
      expect((await grant(t.id, key, 1)).status, `${key.length} characters`).to.equal(200);
    const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
    expect(await references(t.id)).to.deep.equal([`admin:${fits}`, sha(`admin:${'b'.repeat(186)}`), sha(`admin:${longest}`)]);
    expect((await grant(t.id, longest, 1)).headers.get('idempotency-replay')).to.equal('true');
  });
});

describe('hardening: the public development secrets are refused off loopback', () => {
  it('`npm start` with HOST=0.0.0.0 and the development secrets exits 2 with one line per secret, before opening any connection', async () => {
    // DB_HOST points nowhere routable: had it tried to connect, it would hang or fail with a connection error instead.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOST: '0.0.0.0',
        DB_HOST: '203.0.113.1',
        GATEWAY: 'http',
        GATEWAY_URL: 'http://203.0.113.1/send',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).to.equal(2);
    const line = (variable: string) =>
      `  - ${variable}: is the public development default, refused with HOST=0.0.0.0 (not loopback); set your own ${variable} or bind HOST=127.0.0.1\n`;
    expect(stderr).to.equal(`Invalid configuration:\n${line('ADMIN_TOKEN')}${line('SECRET_KEY')}${line('GATEWAY_SECRET')}`);
  });
});

describe('hardening: webhook URLs that point inside are refused (SSRF)', () => {
  let api: TestApi;
  let open: TestApi;
  let orgId: number;
  before(async () => {
    api = await startApi();
    open = await startApi({ WEBHOOK_ALLOW_PRIVATE: 'true' });
    orgId = (await createTenant(api.deps)).id;
  });
  after(async () => {
    await api.stop();
    await open.stop();
  });

  const patch = (a: TestApi, webhookUrl: string) => a.request('PATCH', `/orgs/${orgId}`, { admin: true, body: { webhookUrl } });

  for (const [kind, url] of [
    ['loopback', 'http://127.0.0.1:8080/hook'],
    ['localhost', 'http://localhost/hook'],
    ['cloud metadata (link-local)', 'http://169.254.169.254/latest/meta-data/'],
    ['private 10/8', 'http://10.0.0.5/hook'],
    ['private 192.168/16', 'https://192.168.1.1/hook'],
    ['CGNAT', 'http://100.64.0.1/hook'],
    ['IPv6 loopback', 'http://[::1]/hook'],
    ['IPv6 ULA', 'http://[fd00::1]/hook'],
    ['unspecified', 'http://0.0.0.0/hook'],
    ['decimal spelling of 127.0.0.1', 'http://2130706433/hook'],
  ] as const) {
    it(`PATCH /orgs/:id answers 400 WEBHOOK_URL_FORBIDDEN for ${kind} (${url}) and keeps the old URL`, async () => {
      const res = await patch(api, url);
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('WEBHOOK_URL_FORBIDDEN');
      expect((await api.request('GET', `/orgs/${orgId}`, { admin: true })).body.org.webhookUrl).to.not.equal(url);
    });
  }

  it('accepts a public URL, and internal ones only with WEBHOOK_ALLOW_PRIVATE=true (development)', async () => {
    expect((await patch(api, 'https://hooks.example.com/messages')).status).to.equal(200);
    expect((await patch(open, 'http://127.0.0.1:8080/hook')).status).to.equal(200);
  });
});
