import { expect } from 'chai';
import { ADMIN_TOKEN, createTenant, rows, startApi, uniqueName, type TestApi } from '../helpers.js';

describe('admin API: /orgs', () => {
  let api: TestApi;
  before(async () => {
    api = await startApi({ BODY_LIMIT: '2kb' });
  });
  after(async () => api.stop());

  const expectError = (
    res: { status: number; body: { success: boolean; error: { code: string }; requestId: string } },
    status: number,
    code: string,
  ) => {
    expect(res.status, JSON.stringify(res.body)).to.equal(status);
    expect(res.body.success).to.equal(false);
    expect(res.body.error.code).to.equal(code);
    expect(res.body.requestId).to.be.a('string');
  };

  describe('POST /orgs', () => {
    it('provisions the tenant before answering 201 with the org and a one-time API key', async () => {
      const name = uniqueName('acme');
      const res = await api.request('POST', '/orgs', { admin: true, body: { name, credits: 25 } });
      expect(res.status).to.equal(201);
      expect(res.body.success).to.equal(true);
      expect(res.body.org).to.include({ name, status: 'ACTIVE', creditBalance: 25 });
      expect(res.body.org).to.have.all.keys('id', 'name', 'status', 'creditBalance', 'createdAt', 'updatedAt');
      expect(res.body.apiKey).to.match(/^tk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
      const me = await api.request('GET', '/org', { org: { id: res.body.org.id, apiKey: res.body.apiKey } });
      expect(me.status).to.equal(200);
      expect(me.body.org.creditBalance).to.equal(25);
    });

    it('gives DEFAULT_CREDITS when credits is omitted', async () => {
      const res = await api.request('POST', '/orgs', { admin: true, body: { name: uniqueName() } });
      expect(res.status).to.equal(201);
      expect(res.body.org.creditBalance).to.equal(100);
    });

    it('answers 409 ORG_NAME_TAKEN for a duplicate name, and creates nothing', async () => {
      const name = uniqueName('dup');
      expect((await api.request('POST', '/orgs', { admin: true, body: { name } })).status).to.equal(201);
      const [{ n: before }] = (await rows<{ n: number }>(api.deps.sharedDb, 'SELECT COUNT(*) AS n FROM orgs')) as [{ n: number }];
      expectError(await api.request('POST', '/orgs', { admin: true, body: { name } }), 409, 'ORG_NAME_TAKEN');
      const [{ n: after }] = (await rows<{ n: number }>(api.deps.sharedDb, 'SELECT COUNT(*) AS n FROM orgs')) as [{ n: number }];
      expect(after).to.equal(before);
    });

    for (const [label, body] of [
      ['no name', {}],
      ['an empty name', { name: '' }],
      ['a blank name', { name: '   ' }],
      ['a name over 100 characters', { name: 'x'.repeat(101) }],
      ['a name with a control character', { name: 'evil\u0007corp' }],
      ['a name with a newline', { name: 'evil\ncorp' }],
      ['a name that is not a string', { name: 42 }],
      ['negative credits', { name: 'neg credits', credits: -1 }],
      ['fractional credits', { name: 'frac credits', credits: 1.5 }],
      ['an unknown field', { name: 'extra field', plan: 'gold' }],
      ['an array body', [1, 2]],
    ] as const) {
      it(`answers 400 VALIDATION_FAILED for ${label}`, async () => {
        const res = await api.request('POST', '/orgs', { admin: true, body });
        expectError(res, 400, 'VALIDATION_FAILED');
        expect(res.body.error.details).to.be.an('array').with.length.greaterThan(0);
      });
    }

    it('answers 415 UNSUPPORTED_MEDIA_TYPE for a body that is not JSON', async () => {
      expectError(
        await api.request('POST', '/orgs', {
          admin: true,
          body: 'name=x',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
    });

    it('answers 400 INVALID_JSON for malformed JSON', async () => {
      expectError(await api.request('POST', '/orgs', { admin: true, body: '{"name": ' }), 400, 'INVALID_JSON');
    });

    it('answers 413 PAYLOAD_TOO_LARGE for a body over the limit', async () => {
      expectError(await api.request('POST', '/orgs', { admin: true, body: { name: 'x'.repeat(4000) } }), 413, 'PAYLOAD_TOO_LARGE');
    });

    it('answers 401 without the admin token, and 401 with a wrong one', async () => {
      const missing = await api.request('POST', '/orgs', { body: { name: uniqueName() } });
      expectError(missing, 401, 'AUTH_REQUIRED');
      expect(missing.headers.get('www-authenticate')).to.equal('Bearer');
      expectError(
        await api.request('POST', '/orgs', { body: { name: uniqueName() }, headers: { Authorization: `Bearer ${ADMIN_TOKEN}x` } }),
        401,
        'INVALID_ADMIN_TOKEN',
      );
      expectError(await api.request('GET', '/orgs', { headers: { Authorization: ADMIN_TOKEN } }), 401, 'INVALID_ADMIN_TOKEN');
    });

    it('does not accept a tenant API key as the admin token', async () => {
      const t = await createTenant(api.deps);
      expectError(await api.request('GET', '/orgs', { headers: { Authorization: `Bearer ${t.apiKey}` } }), 401, 'INVALID_ADMIN_TOKEN');
    });
  });

  describe('GET /orgs and /orgs/:id', () => {
    it('pages by id with a Link header to the next page', async () => {
      for (let i = 0; i < 3; i++) await createTenant(api.deps);
      const first = await api.request('GET', '/orgs?limit=2', { admin: true });
      expect(first.status).to.equal(200);
      expect(first.body.orgs).to.have.length(2);
      const link = first.headers.get('link')!;
      expect(link).to.match(/^<\/orgs\?limit=2&after=\d+>; rel="next"$/);
      const next = await api.request('GET', link.slice(1, link.indexOf('>')), { admin: true });
      expect(next.body.orgs[0].id).to.be.greaterThan(first.body.orgs[1].id);
    });

    it('shows one org with where it lives, never its credentials', async () => {
      const t = await createTenant(api.deps);
      const res = await api.request('GET', `/orgs/${t.id}`, { admin: true });
      expect(res.status).to.equal(200);
      expect(res.body.org).to.include({ id: t.id, dbName: t.dbName, status: 'ACTIVE' });
      expect(JSON.stringify(res.body)).not.to.match(/password|hash|v1\./i);
    });

    it('answers 404 ORG_NOT_FOUND for an unknown org and 400 for a malformed id or filter', async () => {
      expectError(await api.request('GET', '/orgs/987654', { admin: true }), 404, 'ORG_NOT_FOUND');
      expectError(await api.request('GET', '/orgs/abc', { admin: true }), 400, 'VALIDATION_FAILED');
      expectError(await api.request('GET', '/orgs?limit=0', { admin: true }), 400, 'VALIDATION_FAILED');
      expectError(await api.request('GET', '/orgs?limit=101', { admin: true }), 400, 'VALIDATION_FAILED');
      expectError(await api.request('GET', '/orgs?status=BOGUS', { admin: true }), 400, 'VALIDATION_FAILED');
    });
  });

  describe('PATCH /orgs/:id', () => {
    it('suspends (the tenant then gets 403 ORG_SUSPENDED) and resumes', async () => {
      const t = await createTenant(api.deps);
      expect((await api.request('GET', '/org', { org: t })).status).to.equal(200);
      const res = await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { status: 'SUSPENDED' } });
      expect(res.status).to.equal(200);
      expect(res.body.org.status).to.equal('SUSPENDED');
      expectError(await api.request('GET', '/org', { org: t }), 403, 'ORG_SUSPENDED');
      expect((await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { status: 'ACTIVE' } })).status).to.equal(200);
      expect((await api.request('GET', '/org', { org: t })).status).to.equal(200);
    });

    it('sets and clears a rate-limit override and a webhook URL', async () => {
      const t = await createTenant(api.deps);
      const set = await api.request('PATCH', `/orgs/${t.id}`, {
        admin: true,
        body: { rateLimit: { points: 5, duration: 1 }, webhookUrl: 'https://example.com/hook' },
      });
      expect(set.body.org).to.deep.include({ rateLimit: { points: 5, duration: 1 }, webhookUrl: 'https://example.com/hook' });
      const cleared = await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { rateLimit: null, webhookUrl: null } });
      expect(cleared.body.org).to.deep.include({ rateLimit: null, webhookUrl: null });
    });

    for (const [label, body] of [
      ['an empty body', {}],
      ['an unknown status', { status: 'DELETED' }],
      ['a rate limit without duration', { rateLimit: { points: 5 } }],
      ['a non-http webhook', { webhookUrl: 'ftp://example.com' }],
      ['an unknown field', { name: 'rename' }],
    ] as const) {
      it(`answers 400 VALIDATION_FAILED for ${label}`, async () => {
        const t = await createTenant(api.deps);
        expectError(await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body }), 400, 'VALIDATION_FAILED');
      });
    }

    it('answers 409 ORG_NOT_READY when activating an org whose provisioning failed', async () => {
      const t = await createTenant(api.deps);
      await api.deps.sharedDb.query("UPDATE orgs SET status = 'FAILED' WHERE id = :id", { replacements: { id: t.id } });
      expectError(await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { status: 'ACTIVE' } }), 409, 'ORG_NOT_READY');
      expectError(await api.request('PATCH', '/orgs/987654', { admin: true, body: { status: 'ACTIVE' } }), 404, 'ORG_NOT_FOUND');
    });
  });

  describe('POST /orgs/:id/credits', () => {
    const ledgerSum = async (id: number) =>
      Number(
        (
          await rows<{ s: string }>(api.deps.sharedDb, 'SELECT COALESCE(SUM(amount),0) AS s FROM credit_ledger WHERE org_id = :id', { id })
        )[0]!.s,
      );

    it('grants credits and writes a ledger row; the balance equals the ledger sum', async () => {
      const t = await createTenant(api.deps, { credits: 10 });
      const res = await api.request('POST', `/orgs/${t.id}/credits`, { admin: true, body: { amount: 15 } });
      expect(res.status).to.equal(200);
      expect(res.body.org.creditBalance).to.equal(25);
      expect(res.body.entry).to.include({ kind: 'grant', amount: 15, balanceAfter: 25 });
      expect(await ledgerSum(t.id)).to.equal(25);
    });

    it('honours Idempotency-Key: a replay applies nothing and says so; another amount is 422', async () => {
      const t = await createTenant(api.deps, { credits: 0 });
      const headers = { 'Idempotency-Key': `grant-${t.id}` };
      const first = await api.request('POST', `/orgs/${t.id}/credits`, { admin: true, headers, body: { amount: 7 } });
      const replay = await api.request('POST', `/orgs/${t.id}/credits`, { admin: true, headers, body: { amount: 7 } });
      expect(replay.status).to.equal(200);
      expect(replay.headers.get('idempotency-replay')).to.equal('true');
      expect(replay.body.entry.id).to.equal(first.body.entry.id);
      expect(replay.body.org.creditBalance).to.equal(7);
      expectError(
        await api.request('POST', `/orgs/${t.id}/credits`, { admin: true, headers, body: { amount: 8 } }),
        422,
        'IDEMPOTENCY_KEY_REUSED',
      );
      expect(await ledgerSum(t.id)).to.equal(7);
    });

    it('compares Idempotency-Keys exactly: Invoice-A and invoice-A are two grants', async () => {
      const t = await createTenant(api.deps, { credits: 0 });
      for (const key of ['Invoice-A', 'invoice-A']) {
        const res = await api.request('POST', `/orgs/${t.id}/credits`, {
          admin: true,
          headers: { 'Idempotency-Key': key },
          body: { amount: 100 },
        });
        expect(res.headers.get('idempotency-replay')).to.equal(null);
      }
      expect(await ledgerSum(t.id)).to.equal(200);
    });

    it('answers 409 INSUFFICIENT_BALANCE for an adjustment below zero, and the balance is unchanged', async () => {
      const t = await createTenant(api.deps, { credits: 5 });
      expectError(await api.request('POST', `/orgs/${t.id}/credits`, { admin: true, body: { amount: -6 } }), 409, 'INSUFFICIENT_BALANCE');
      const ok = await api.request('POST', `/orgs/${t.id}/credits`, { admin: true, body: { amount: -5 } });
      expect(ok.body.org.creditBalance).to.equal(0);
      expect(ok.body.entry.kind).to.equal('adjustment');
      expect(await ledgerSum(t.id)).to.equal(0);
    });

    for (const [label, body] of [
      ['zero', { amount: 0 }],
      ['a string', { amount: 'ten' }],
      ['a fraction', { amount: 1.5 }],
      ['no amount', {}],
      ['a huge amount', { amount: 1e12 }],
    ] as const) {
      it(`answers 400 VALIDATION_FAILED for ${label}`, async () => {
        const t = await createTenant(api.deps, { credits: 3 });
        expectError(await api.request('POST', `/orgs/${t.id}/credits`, { admin: true, body }), 400, 'VALIDATION_FAILED');
        expect(await ledgerSum(t.id)).to.equal(3);
      });
    }

    it('answers 400 for a malformed Idempotency-Key and 404 for an unknown org', async () => {
      const t = await createTenant(api.deps);
      expectError(
        await api.request('POST', `/orgs/${t.id}/credits`, {
          admin: true,
          headers: { 'Idempotency-Key': 'x'.repeat(256) },
          body: { amount: 1 },
        }),
        400,
        'INVALID_IDEMPOTENCY_KEY',
      );
      expectError(await api.request('POST', '/orgs/987654/credits', { admin: true, body: { amount: 1 } }), 404, 'ORG_NOT_FOUND');
    });
  });

  describe('the edge', () => {
    it('answers 404 NOT_FOUND for an unknown route and 405 for a wrong method, as JSON', async () => {
      expectError(await api.request('GET', '/nope'), 404, 'NOT_FOUND');
      const wrong = await api.request('DELETE', '/orgs', { admin: true });
      expectError(wrong, 405, 'METHOD_NOT_ALLOWED');
      const allowed = (res: { headers: Headers }) => res.headers.get('allow')!.split(', ').sort();
      expect(allowed(wrong), 'Allow names what the path takes').to.deep.equal(['GET', 'HEAD', 'POST']);
      const perMessage = await api.request('DELETE', '/messages/1');
      expect(perMessage.status).to.equal(405);
      expect(allowed(perMessage)).to.deep.equal(['GET', 'HEAD']);
    });

    it('echoes a safe X-Request-Id and replaces an unsafe one', async () => {
      expect((await api.request('GET', '/health', { headers: { 'X-Request-Id': 'abc-123' } })).headers.get('x-request-id')).to.equal(
        'abc-123',
      );
      expect((await api.request('GET', '/health', { headers: { 'X-Request-Id': 'a b<script>' } })).headers.get('x-request-id')).to.match(
        /^[0-9a-f-]{36}$/,
      );
    });

    it('answers /health and /ready', async () => {
      expect((await api.request('GET', '/health')).body).to.deep.equal({ status: 'ok' });
      expect((await api.request('GET', '/ready')).body).to.deep.equal({ status: 'ready', checks: { sharedDb: 'ok', redis: 'ok' } });
    });
  });
});
