import { expect } from 'chai';
import { deliveryJobId } from '../../src/platform/queue/queues.js';
import { createTenant, rows, startApi, type TestApi } from '../helpers.js';

describe('POST /messages', () => {
  let api: TestApi;
  let org: { id: number; apiKey: string; dbName: string };
  before(async () => {
    api = await startApi();
    org = await createTenant(api.deps, { credits: 50 });
  });
  after(async () => api.stop());

  const messageCount = async (dbName: string) =>
    Number((await rows<{ n: number }>(api.deps.sharedDb, `SELECT COUNT(*) AS n FROM \`${dbName}\`.messages`))[0]!.n);
  const jobCount = async () => {
    const c = await api.deps.deliveryQueue.getJobCounts('waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized');
    return Object.values(c).reduce((a, b) => a + b, 0);
  };
  const send = (body: unknown, headers: Record<string, string> = {}, who = org) =>
    api.request('POST', '/messages', { org: who, body, headers });

  it('stores the message QUEUED, enqueues one job with ids only, and answers 202', async () => {
    const res = await send({ to: '+15551234567', channel: 'sms', body: 'Hello there' });
    expect(res.status).to.equal(202);
    expect(res.body.success).to.equal(true);
    expect(res.body.message).to.include({ to: '+15551234567', channel: 'sms', body: 'Hello there', status: 'QUEUED', cost: 1 });
    expect(res.body.message.id).to.be.a('number');
    expect(res.body.message.createdAt).to.be.a('string');
    const job = await api.deps.deliveryQueue.getJob(deliveryJobId(org.id, res.body.message.id));
    expect(job?.data).to.deep.equal({ orgId: org.id, messageId: res.body.message.id });
    const listed = await api.request('GET', '/messages?limit=1', { org });
    expect(listed.body[0].id).to.equal(res.body.message.id);
  });

  it('charges one credit per SMS segment (GSM-7 153 / UCS-2 67 when split) and 1 per email', async () => {
    expect((await send({ to: '+15551234567', channel: 'sms', body: 'a'.repeat(161) })).body.message.cost).to.equal(2);
    expect((await send({ to: '+15551234567', channel: 'sms', body: 'ж'.repeat(135) })).body.message.cost).to.equal(3);
    expect((await send({ to: 'someone@example.com', channel: 'email', body: 'x'.repeat(5000) })).body.message.cost).to.equal(1);
  });

  it('answers 402 INSUFFICIENT_CREDITS when the balance is already below the cost, storing nothing', async () => {
    const poor = await createTenant(api.deps, { credits: 1 });
    const before = await jobCount();
    const res = await send({ to: '+15551234567', channel: 'sms', body: 'a'.repeat(200) }, {}, poor);
    expect(res.status).to.equal(402);
    expect(res.body.error).to.deep.include({ code: 'INSUFFICIENT_CREDITS', details: { cost: 2, balance: 1 } });
    expect(await messageCount(poor.dbName)).to.equal(0);
    expect(await jobCount()).to.equal(before);
  });

  describe('Idempotency-Key', () => {
    it('answers the first answer again (202, same body, Idempotency-Replay: true) for the same key and body, storing one row, even once delivered', async () => {
      const t = await createTenant(api.deps);
      const headers = { 'Idempotency-Key': 'order-42-confirmation' };
      const body = { to: 'buyer@example.com', channel: 'email', body: 'Your order shipped' };
      const first = await send(body, headers, t);
      const again = await send(body, headers, t);
      expect(first.status).to.equal(202);
      expect(again.status).to.equal(202);
      expect(again.headers.get('idempotency-replay')).to.equal('true');
      expect(first.headers.get('idempotency-replay')).to.equal(null);
      expect(again.body).to.deep.equal(first.body);
      expect(await messageCount(t.dbName)).to.equal(1);
      // Delivered meanwhile (done here by hand): the replay still answers as the first request was answered.
      await api.deps.sharedDb.query(
        `UPDATE \`${t.dbName}\`.messages SET status = 'SENT', attempts = 1, sent_at = CURRENT_TIMESTAMP(3) WHERE id = :id`,
        {
          replacements: { id: first.body.message.id },
        },
      );
      const later = await send(body, headers, t);
      expect(later.status).to.equal(202);
      expect(later.body.message).to.deep.equal(first.body.message);
    });

    it('forgets a key after IDEMPOTENCY_KEY_TTL_SEC (24 h by default): the same key then makes a new message', async () => {
      const t = await createTenant(api.deps);
      const headers = { 'Idempotency-Key': 'old-key' };
      const body = { to: '+15551234567', channel: 'sms', body: 'yesterday' };
      const first = await send(body, headers, t);
      await api.deps.sharedDb.query(`UPDATE \`${t.dbName}\`.messages SET created_at = created_at - INTERVAL 25 HOUR WHERE id = :id`, {
        replacements: { id: first.body.message.id },
      });
      const again = await send(body, headers, t);
      expect(again.status).to.equal(202);
      expect(again.headers.get('idempotency-replay')).to.equal(null);
      expect(again.body.message.id).to.not.equal(first.body.message.id);
      expect(await messageCount(t.dbName)).to.equal(2);
      const third = await send(body, headers, t);
      expect(third.body.message.id, 'the new message holds the key now').to.equal(again.body.message.id);
    });

    it('answers 422 IDEMPOTENCY_KEY_REUSED for the same key with another body, storing nothing', async () => {
      const t = await createTenant(api.deps);
      const headers = { 'Idempotency-Key': 'k-1' };
      await send({ to: '+15551234567', channel: 'sms', body: 'one' }, headers, t);
      const res = await send({ to: '+15551234567', channel: 'sms', body: 'two' }, headers, t);
      expect(res.status).to.equal(422);
      expect(res.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
      expect(await messageCount(t.dbName)).to.equal(1);
    });

    it('compares keys exactly: Order-1 and order-1 are two messages', async () => {
      const t = await createTenant(api.deps);
      const body = { to: '+15551234567', channel: 'sms', body: 'hi' };
      const [upper, lower] = [await send(body, { 'Idempotency-Key': 'Order-1' }, t), await send(body, { 'Idempotency-Key': 'order-1' }, t)];
      expect([upper.status, lower.status]).to.deep.equal([202, 202]);
      expect(upper.body.message.id).not.to.equal(lower.body.message.id);
    });

    it('keeps keys per org: the same key in two orgs makes two messages', async () => {
      const [a, b] = [await createTenant(api.deps), await createTenant(api.deps)];
      const headers = { 'Idempotency-Key': 'shared-key' };
      expect((await send({ to: '+15551234567', channel: 'sms', body: 'hi' }, headers, a)).status).to.equal(202);
      expect((await send({ to: '+15551234567', channel: 'sms', body: 'hi' }, headers, b)).status).to.equal(202);
    });

    it('shares one row between concurrent requests with the same key', async () => {
      const t = await createTenant(api.deps);
      const results = await Promise.all(
        Array.from({ length: 10 }, () => send({ to: '+15551234567', channel: 'sms', body: 'once' }, { 'Idempotency-Key': 'race' }, t)),
      );
      expect(new Set(results.map((r) => r.body.message.id)).size).to.equal(1);
      expect(results.every((r) => r.status === 202)).to.equal(true);
      expect(
        results.filter((r) => r.headers.get('idempotency-replay') === null),
        'one first answer, the rest replays',
      ).to.have.length(1);
      expect(await messageCount(t.dbName)).to.equal(1);
    });

    it('answers 400 INVALID_IDEMPOTENCY_KEY for a key over 255 characters', async () => {
      const res = await send({ to: '+15551234567', channel: 'sms', body: 'hi' }, { 'Idempotency-Key': 'k'.repeat(256) });
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('INVALID_IDEMPOTENCY_KEY');
    });
  });

  describe('bad input: exact status and code, and nothing is written, enqueued or charged', () => {
    const cases: [string, unknown, number, string, Record<string, string>?][] = [
      ['no fields', {}, 400, 'VALIDATION_FAILED'],
      ['no to', { channel: 'sms', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['no channel', { to: '+15551234567', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['no body', { to: '+15551234567', channel: 'sms' }, 400, 'VALIDATION_FAILED'],
      ['an extra field', { to: '+15551234567', channel: 'sms', body: 'hi', priority: 'high' }, 400, 'VALIDATION_FAILED'],
      ['a number as body', { to: '+15551234567', channel: 'sms', body: 42 }, 400, 'VALIDATION_FAILED'],
      ['a number as to', { to: 15551234567, channel: 'sms', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['channel fax', { to: '+15551234567', channel: 'fax', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['an sms to a number without +', { to: '15551234567', channel: 'sms', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['an sms to a number with letters', { to: '+1555CALLNOW', channel: 'sms', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['an sms to an address', { to: 'a@example.com', channel: 'sms', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['an email to a phone number', { to: '+15551234567', channel: 'email', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['an email to a malformed address', { to: 'not-an-address', channel: 'email', body: 'hi' }, 400, 'VALIDATION_FAILED'],
      ['an empty body', { to: '+15551234567', channel: 'sms', body: '' }, 400, 'VALIDATION_FAILED'],
      ['a blank body', { to: '+15551234567', channel: 'sms', body: '   ' }, 400, 'VALIDATION_FAILED'],
      ['an sms body over 1,600 characters', { to: '+15551234567', channel: 'sms', body: 'a'.repeat(1601) }, 400, 'VALIDATION_FAILED'],
      ['an email body over 100 KB', { to: 'a@example.com', channel: 'email', body: 'é'.repeat(60_000) }, 400, 'VALIDATION_FAILED'],
      ['a body that is not JSON', 'to=+15551234567', 415, 'UNSUPPORTED_MEDIA_TYPE', { 'Content-Type': 'text/plain' }],
      ['malformed JSON', '{"to":', 400, 'INVALID_JSON'],
      ['a request over the size limit', { to: 'a@example.com', channel: 'email', body: 'x'.repeat(300_000) }, 413, 'PAYLOAD_TOO_LARGE'],
    ];
    for (const [label, body, status, code, headers] of cases) {
      it(`${label} → ${status} ${code}`, async () => {
        const [rowsBefore, jobsBefore, balanceBefore] = [
          await messageCount(org.dbName),
          await jobCount(),
          await api.deps.repo.balance(org.id),
        ];
        const res = await send(body, headers);
        expect(res.status, JSON.stringify(res.body)).to.equal(status);
        expect(res.body.error.code).to.equal(code);
        expect([await messageCount(org.dbName), await jobCount(), await api.deps.repo.balance(org.id)]).to.deep.equal([
          rowsBefore,
          jobsBefore,
          balanceBefore,
        ]);
      });
    }
  });
});

describe('GET /messages query plans', () => {
  let api: TestApi;
  before(async () => {
    api = await startApi();
  });
  after(async () => api.stop());

  it('lists newest first (optionally by status, with a cursor) through an index, never a full scan and sort', async () => {
    const t = await createTenant(api.deps);
    const db = t.dbName;
    for (let i = 0; i < 50; i++) {
      await api.deps.sharedDb.query(
        `INSERT INTO \`${db}\`.messages (\`to\`, channel, body, cost, status) VALUES ('+15550000000', 'sms', 'x', 1, :status)`,
        { replacements: { status: i % 2 ? 'SENT' : 'QUEUED' } },
      );
    }
    const plans: [string, string][] = [
      [`SELECT * FROM \`${db}\`.messages ORDER BY id DESC LIMIT 20`, 'PRIMARY'],
      [`SELECT * FROM \`${db}\`.messages WHERE id < 30 ORDER BY id DESC LIMIT 20`, 'PRIMARY'],
      [`SELECT * FROM \`${db}\`.messages WHERE status = 'SENT' ORDER BY id DESC LIMIT 20`, 'messages_status_id'],
      [`SELECT * FROM \`${db}\`.messages WHERE status = 'SENT' AND id < 30 ORDER BY id DESC LIMIT 20`, 'messages_status_id'],
    ];
    for (const [sql, index] of plans) {
      const [plan] = await rows<{ key: string | null; Extra: string | null; type: string }>(api.deps.sharedDb, `EXPLAIN ${sql}`);
      expect(plan?.key, sql).to.equal(index);
      expect(plan?.Extra ?? '', sql).not.to.match(/filesort/i);
    }
  });
});

describe('POST /messages while Redis is unreachable', () => {
  let api: TestApi;
  before(async () => {
    api = await startApi({ REDIS_URL: 'redis://127.0.0.1:1' });
  });
  after(async () => api.stop());

  it('answers 503 QUEUE_UNAVAILABLE fast and marks the stored row FAILED ENQUEUE_FAILED, never leaving it QUEUED', async () => {
    const t = await createTenant(api.deps);
    const res = await api.request('POST', '/messages', { org: t, body: { to: '+15551234567', channel: 'sms', body: 'hi' } });
    expect(res.status).to.equal(503);
    expect(res.body.error.code).to.equal('QUEUE_UNAVAILABLE');
    expect(res.headers.get('retry-after')).to.equal('1');
    const list = await api.request('GET', '/messages', { org: t });
    expect(list.body).to.have.length(1);
    expect(list.body[0]).to.include({ status: 'FAILED', errorCode: 'ENQUEUE_FAILED' });
    expect(await api.deps.repo.balance(t.id)).to.equal(100);
  });

  it('frees the Idempotency-Key of a message it could not enqueue, so the same request can be retried', async () => {
    const t = await createTenant(api.deps);
    const res = await api.request('POST', '/messages', {
      org: t,
      headers: { 'Idempotency-Key': 'retry-me' },
      body: { to: '+15551234567', channel: 'sms', body: 'hi' },
    });
    expect(res.status).to.equal(503);
    const [row] = await rows<{ status: string; idempotency_key: string | null }>(
      api.deps.sharedDb,
      `SELECT status, idempotency_key FROM \`${t.dbName}\`.messages`,
    );
    expect(row).to.deep.equal({ status: 'FAILED', idempotency_key: null });
  });
});
