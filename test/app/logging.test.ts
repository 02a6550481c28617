import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { createLogger } from '../../src/platform/lib/logger.js';
import { deliveryJobId } from '../../src/platform/queue/queues.js';
import { ADMIN_TOKEN, createTenant, rows, startApi, startApiWithWorkers, uniqueName } from '../helpers.js';

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
      const [{ enc }] = (await rows<{ enc: string }>(api.deps.sharedDb, 'SELECT db_password_enc AS enc FROM orgs WHERE id = :id', {
        id: org.id,
      })) as [{ enc: string }];
      const password = api.deps.secrets.decrypt(enc);

      const lines = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const access = lines.filter((l) => l.message === 'request');
      expect(access).to.have.length(3);
      expect(access.find((l) => l.requestId === 'trace-me-1')).to.include({ method: 'GET', path: '/org', status: 200, orgId: org.id });
      for (const l of access)
        expect(l).to.have.keys(
          'level',
          'message',
          'timestamp',
          'requestId',
          'method',
          'path',
          'status',
          'ms',
          ...(l.orgId ? ['orgId'] : []),
        );
      for (const secret of [org.apiKey, org.apiKey.slice(16), ADMIN_TOKEN, password, enc]) expect(out).not.to.contain(secret);
    } finally {
      await api.stop();
    }
  });
});

describe('worker logs', () => {
  it('carry job id, org id and message id, and never the message body, the key or a password', async () => {
    const stream = new PassThrough();
    let out = '';
    stream.on('data', (d: Buffer) => (out += d.toString()));
    const env = { DELIVERY_ATTEMPTS: '2', DELIVERY_BACKOFF_MS: '5' };
    const harness = await startApiWithWorkers(env, { logger: createLogger({ level: 'info', stream }) });
    const { api } = harness;
    try {
      const t = await createTenant(api.deps);
      const secretBody = `the launch code is ${Date.now()}-zebra`;
      const ids: number[] = [];
      for (const to of ['+15551234567', '+15005550001']) {
        const res = await api.request('POST', '/messages', { org: t, body: { to, channel: 'sms', body: secretBody } });
        ids.push(res.body.message.id);
        await harness.delivered(t.id, res.body.message.id);
      }
      const lines = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      // This org's lines: jobs other test files left in the shared queue may be delivered (and logged) here too.
      const line = (message: string) => lines.find((l) => l.message === message && l.jobId !== undefined && l.orgId === t.id);
      expect(line('message sent')).to.include({ orgId: t.id, messageId: ids[0], jobId: deliveryJobId(t.id, ids[0]!) });
      expect(line('message will be retried')).to.include({ orgId: t.id, messageId: ids[1] });
      expect(line('message failed')).to.include({
        orgId: t.id,
        messageId: ids[1],
        code: 'PROVIDER_UNAVAILABLE',
      });
      const [{ enc }] = (await rows<{ enc: string }>(api.deps.sharedDb, 'SELECT db_password_enc AS enc FROM orgs WHERE id = :id', {
        id: t.id,
      })) as [{ enc: string }];
      for (const secret of [secretBody, t.apiKey, api.deps.secrets.decrypt(enc)]) expect(out).not.to.contain(secret);
    } finally {
      await harness.stop();
    }
  });
});
