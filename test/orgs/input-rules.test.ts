/**
 * One rule per input (src/orgs/domain/org.rules.ts): the HTTP API and bin/tenant refuse the same values. Each case was
 * a drift between the two copies that used to exist: credits above 10^9 and org ids above 2^32−1 were accepted by the
 * CLI only; a malformed server name was refused by the CLI only.
 */
import { expect } from 'chai';
import { cli, createTenant, startApi, uniqueName, type CliResult, type TestApi } from '../helpers.js';

/** A usage error: exit 2, one `error:` line naming the argument. */
function expectUsage(r: CliResult, argument: string): void {
  expect(r.code, `exit code; stderr: ${r.stderr}`).to.equal(2);
  expect(r.stderr.trim()).to.match(/^error: /);
  expect(r.stderr).to.include(argument);
}

describe('input rules: the CLI and the HTTP API refuse the same values', () => {
  let api: TestApi;
  let org: { id: number; apiKey: string };

  before(async () => {
    api = await startApi();
    org = await createTenant(api.deps);
  });
  after(() => api.stop());

  it('initial credits above 1,000,000,000: POST /orgs 400 VALIDATION_FAILED, create --credits exit 2, no org made', async () => {
    const name = uniqueName('too rich');
    const http = await api.request('POST', '/orgs', { admin: true, body: { name, credits: 1_000_000_001 } });
    expect(http.status).to.equal(400);
    expect(http.body.error.code).to.equal('VALIDATION_FAILED');
    expectUsage(await cli(['create', name, '--credits', '1000000001']), '--credits');
    const list = await api.request('GET', '/orgs?limit=100', { admin: true });
    expect(list.body.orgs.map((o: { name: string }) => o.name)).to.not.include(name);
  });

  it('a grant above 1,000,000,000: POST /orgs/:id/credits 400, credits <id> <amount> exit 2, balance unchanged', async () => {
    const http = await api.request('POST', `/orgs/${org.id}/credits`, { admin: true, body: { amount: 1_000_000_001 } });
    expect(http.status).to.equal(400);
    expect(http.body.error.code).to.equal('VALIDATION_FAILED');
    expectUsage(await cli(['credits', String(org.id), '1000000001']), 'amount');
    expectUsage(await cli(['credits', String(org.id), '--', '-1000000001']), 'amount');
    expect((await api.request('GET', `/orgs/${org.id}`, { admin: true })).body.org.creditBalance).to.equal(100);
  });

  it('an org id above 4,294,967,295: GET /orgs/:id 400, X-Org-Id 400 INVALID_ORG_ID, show <id> exit 2', async () => {
    const http = await api.request('GET', '/orgs/4294967296', { admin: true });
    expect(http.status).to.equal(400);
    expect(http.body.error.code).to.equal('VALIDATION_FAILED');
    const tenant = await api.request('GET', '/org', { headers: { 'X-Org-Id': '4294967296', Authorization: `Bearer ${org.apiKey}` } });
    expect(tenant.status).to.equal(400);
    expect(tenant.body.error.code).to.equal('INVALID_ORG_ID');
    expectUsage(await cli(['show', '4294967296']), 'id');
    expectUsage(await cli(['migrate', '--tenant', '9999999999']), '--tenant');
  });

  it('a delivery cap above 1000: PATCH /orgs/:id 400, limits --delivery-concurrency exit 2', async () => {
    const http = await api.request('PATCH', `/orgs/${org.id}`, { admin: true, body: { deliveryConcurrency: 1001 } });
    expect(http.status).to.equal(400);
    expect(http.body.error.code).to.equal('VALIDATION_FAILED');
    expectUsage(await cli(['limits', String(org.id), '--delivery-concurrency', '1001']), '--delivery-concurrency');
  });

  it('a malformed server name: POST /orgs 400 VALIDATION_FAILED (not 404), create --server exit 2', async () => {
    const name = uniqueName('misplaced');
    const http = await api.request('POST', '/orgs', { admin: true, body: { name, server: 'no such/server!' } });
    expect(http.status).to.equal(400);
    expect(http.body.error.code).to.equal('VALIDATION_FAILED');
    expect(http.body.error.details[0]).to.include({ in: 'body', path: 'server' });
    expectUsage(await cli(['create', name, '--server', 'no such/server!']), '--server');
  });

  it('a well-formed server name that is not registered is 404 SERVER_NOT_FOUND on both', async () => {
    const name = uniqueName('nowhere');
    const http = await api.request('POST', '/orgs', { admin: true, body: { name, server: 'nowhere-1' } });
    expect(http.status).to.equal(404);
    expect(http.body.error.code).to.equal('SERVER_NOT_FOUND');
    const r = await cli(['create', name, '--server', 'nowhere-1']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('SERVER_NOT_FOUND');
  });
});
