import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { createLogger } from '../src/lib/logger.js';
import { ADMIN_TOKEN, rows, startApi, uniqueName } from './helpers.js';

describe('access logs', () => {
  it('log one JSON line per request with request id, org id, status and ms, and never a key, token or password', async () => {
    const stream = new PassThrough();
    let out = '';
    stream.on('data', (d: Buffer) => (out += d.toString()));
    const api = await startApi({}, { logger: createLogger({ level: 'info', stream }) });
    try {
      const created = await api.request('POST', '/orgs', { admin: true, body: { name: uniqueName('logged') } });
      const org = { id: created.body.org.id as number, apiKey: created.body.apiKey as string };
      await api.request('GET', '/org', { org, headers: { 'X-Request-Id': 'trace-me-1' } });
      await api.request('GET', '/org', { headers: { 'X-Org-Id': String(org.id), Authorization: `Bearer ${org.apiKey}x` } });
      const [{ enc }] = (await rows<{ enc: string }>(api.deps.sharedDb, 'SELECT db_password_enc AS enc FROM orgs WHERE id = :id', { id: org.id })) as [{ enc: string }];
      const password = api.deps.secrets.decrypt(enc);

      const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const access = lines.filter((l) => l.message === 'request');
      expect(access).to.have.length(3);
      expect(access.find((l) => l.requestId === 'trace-me-1')).to.include({ method: 'GET', path: '/org', status: 200, orgId: org.id });
      for (const l of access) expect(l).to.have.keys('level', 'message', 'timestamp', 'requestId', 'method', 'path', 'status', 'ms', ...(l.orgId ? ['orgId'] : []));
      for (const secret of [org.apiKey, org.apiKey.slice(16), ADMIN_TOKEN, password, enc]) expect(out).not.to.contain(secret);
    } finally {
      await api.stop();
    }
  });
});
