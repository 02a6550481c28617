import { expect } from 'chai';
import { cli, createTenant, eventually, provisionedOrg, rows, startApi, type TestApi } from '../helpers.js';

describe('tenant routing and auth', () => {
  let api: TestApi;
  let a: { id: number; apiKey: string };
  let b: { id: number; apiKey: string };
  before(async () => {
    api = await startApi();
    a = await createTenant(api.deps);
    b = await createTenant(api.deps);
  });
  after(async () => api.stop());

  const expectError = (res: { status: number; body: { error: { code: string } } }, status: number, code: string) => {
    expect(res.status, JSON.stringify(res.body)).to.equal(status);
    expect(res.body.error.code).to.equal(code);
  };

  describe('X-Org-Id', () => {
    for (const [label, value] of [
      ['empty', ''],
      ['non-numeric', 'abc'],
      ['negative', '-1'],
      ['zero', '0'],
      ['fractional', '1.5'],
      ['huge', '99999999999999999999'],
      ['above an unsigned INT', '4294967296'],
      ['an SQL injection', '1 OR 1=1'],
      ['hex', '0x10'],
      ['padded with zeros', '007'],
    ] as const) {
      it(`answers 400 INVALID_ORG_ID when it is ${label}`, async () => {
        expectError(
          await api.request('GET', '/org', { headers: { 'X-Org-Id': value, Authorization: `Bearer ${a.apiKey}` } }),
          400,
          'INVALID_ORG_ID',
        );
      });
    }

    it('answers 400 INVALID_ORG_ID when it is missing', async () => {
      expectError(await api.request('GET', '/org', { headers: { Authorization: `Bearer ${a.apiKey}` } }), 400, 'INVALID_ORG_ID');
    });

    it('answers 404 ORG_NOT_FOUND for an org that does not exist', async () => {
      expectError(await api.request('GET', '/org', { org: { id: 987654, apiKey: a.apiKey } }), 404, 'ORG_NOT_FOUND');
    });
  });

  describe('Authorization', () => {
    it('answers 401 AUTH_REQUIRED without it', async () => {
      const res = await api.request('GET', '/org', { headers: { 'X-Org-Id': String(a.id) } });
      expectError(res, 401, 'AUTH_REQUIRED');
      expect(res.headers.get('www-authenticate')).to.equal('Bearer');
    });

    for (const [label, value] of [
      ['not a Bearer scheme', (k: string) => `Basic ${k}`],
      ['a Bearer with nothing', () => 'Bearer '],
      ['a malformed key', () => 'Bearer tk_short'],
      ['a key with one character changed', (k: string) => `Bearer ${k.slice(0, -1)}${k.endsWith('A') ? 'B' : 'A'}`],
      ['an unknown key of the right shape', () => `Bearer tk_000000000000_${'A'.repeat(43)}`],
    ] as const) {
      it(`answers 401 INVALID_API_KEY for ${label}`, async () => {
        expectError(
          await api.request('GET', '/org', { headers: { 'X-Org-Id': String(a.id), Authorization: value(a.apiKey) } }),
          401,
          'INVALID_API_KEY',
        );
      });
    }

    it('answers 403 ORG_MISMATCH for a key of another org, and shows nothing of it', async () => {
      const res = await api.request('GET', '/org', { headers: { 'X-Org-Id': String(b.id), Authorization: `Bearer ${a.apiKey}` } });
      expectError(res, 403, 'ORG_MISMATCH');
      expect(JSON.stringify(res.body)).not.to.contain(String(b.id === a.id ? '' : 'creditBalance'));
      expectError(
        await api.request('GET', '/messages', { headers: { 'X-Org-Id': String(b.id), Authorization: `Bearer ${a.apiKey}` } }),
        403,
        'ORG_MISMATCH',
      );
    });

    it('records when a key was last used', async () => {
      const t = await createTenant(api.deps);
      await api.request('GET', '/org', { org: t });
      expect(
        await eventually(async () => {
          const [k] = await rows<{ last_used_at: Date | null }>(api.deps.sharedDb, 'SELECT last_used_at FROM api_keys WHERE org_id = :id', {
            id: t.id,
          });
          return k?.last_used_at != null;
        }),
      ).to.equal(true);
    });
  });

  describe('org status', () => {
    it('answers 409 ORG_NOT_READY while provisioning or after it failed', async () => {
      const t = await createTenant(api.deps);
      for (const status of ['PROVISIONING', 'FAILED']) {
        await api.deps.sharedDb.query('UPDATE orgs SET status = :status WHERE id = :id', { replacements: { status, id: t.id } });
        await api.deps.events.publish({ orgId: t.id, reason: 'test' });
        expectError(await api.request('GET', '/org', { org: t }), 409, 'ORG_NOT_READY');
      }
    });

    it('answers 404 for a dropped org', async () => {
      const t = await createTenant(api.deps);
      await api.deps.orgs.drop(t.id);
      expectError(await api.request('GET', '/org', { org: t }), 404, 'ORG_NOT_FOUND');
    });
  });

  describe('changes made by another process', () => {
    it('refuses a revoked key within one second of `bin/tenant keys revoke` exiting', async () => {
      const t = await createTenant(api.deps);
      expect((await api.request('GET', '/org', { org: t })).status).to.equal(200); // now cached in this process
      const prefix = t.apiKey.split('_')[1]!;
      const revoked = await cli(['keys', 'revoke', String(t.id), prefix]);
      expect(revoked.code, revoked.stderr).to.equal(0);
      const refusedInTime = await eventually(async () => (await api.request('GET', '/org', { org: t })).status === 401, 1000, 10);
      expect(refusedInTime).to.equal(true);
    });

    it('refuses a suspended org at once after `bin/tenant suspend`, and serves it again after `resume`', async () => {
      const t = await createTenant(api.deps);
      expect((await api.request('GET', '/org', { org: t })).status).to.equal(200);
      expect((await cli(['suspend', String(t.id)])).code).to.equal(0);
      expect(await eventually(async () => (await api.request('GET', '/org', { org: t })).status === 403, 1000, 10)).to.equal(true);
      expect((await cli(['resume', String(t.id)])).code).to.equal(0);
      expect(await eventually(async () => (await api.request('GET', '/org', { org: t })).status === 200, 1000, 10)).to.equal(true);
    });
  });

  describe('GET /org and /messages', () => {
    it('shows the caller its own org', async () => {
      const res = await api.request('GET', '/org', { org: a });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.include({ success: true });
      expect(res.body.org).to.have.all.keys('id', 'name', 'status', 'creditBalance', 'createdAt', 'updatedAt');
      expect(res.body.org.id).to.equal(a.id);
    });

    it('lists messages newest first from the tenant DB, with a cursor, and 404s unknown ids', async () => {
      await api.deps.tenantDbs.withTenant(await provisionedOrg(api.deps, a.id), async (db) => {
        for (let i = 0; i < 3; i++)
          await db.sequelize.query("INSERT INTO messages (`to`, channel, body, cost) VALUES ('+15550000000', 'sms', :body, 1)", {
            replacements: { body: `m${i}` },
          });
      });
      const first = await api.request('GET', '/messages?limit=2', { org: a });
      expect(first.status).to.equal(200);
      expect(first.body.map((m: { body: string }) => m.body)).to.deep.equal(['m2', 'm1']);
      const link = first.headers.get('link')!;
      expect(link).to.match(/^<\/messages\?limit=2&before=\d+>; rel="next"$/);
      const second = await api.request('GET', link.slice(1, link.indexOf('>')), { org: a });
      expect(second.body.map((m: { body: string }) => m.body)).to.deep.equal(['m0']);
      const one = await api.request('GET', `/messages/${first.body[0].id}`, { org: a });
      expect(one.body.message.body).to.equal('m2');
      expectError(await api.request('GET', `/messages/${first.body[0].id}`, { org: b }), 404, 'MESSAGE_NOT_FOUND');
      expectError(await api.request('GET', '/messages/999999', { org: a }), 404, 'MESSAGE_NOT_FOUND');
      expectError(await api.request('GET', '/messages/abc', { org: a }), 404, 'MESSAGE_NOT_FOUND');
      expect((await api.request('GET', '/messages', { org: b })).body).to.deep.equal([]);
    });

    for (const q of ['limit=0', 'limit=101', 'limit=abc', 'before=-1', 'before=0', 'status=BOGUS', 'unknown=1']) {
      it(`answers 400 VALIDATION_FAILED for ?${q}`, async () => {
        expectError(await api.request('GET', `/messages?${q}`, { org: a }), 400, 'VALIDATION_FAILED');
      });
    }
  });
});
