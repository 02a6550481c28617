import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Job } from 'bullmq';
import { expect } from 'chai';
import { createHttpGateway, gatewaySignature } from '../../src/messages/gateway/http.gateway.js';
import { InProgressGatewayError, PermanentGatewayError, TransientGatewayError } from '../../src/messages/gateway/gateway.js';
import { mapWithConcurrency } from '../../src/platform/lib/concurrency.js';
import { createLogger } from '../../src/platform/lib/logger.js';
import { deliveryJobId, type DeliveryJob } from '../../src/platform/queue/queues.js';
import { accountOf, grantTarget } from '../../src/orgs/domain/provisioner.js';
import { createDeliverMessage, debitReference, refundReference } from '../../src/messages/domain/deliver-message.js';
import { createTenant, rootDb, rows, startApiWithWorkers, type ApiWithWorkers, type TestApi } from '../helpers.js';

const ENV = { DELIVERY_ATTEMPTS: '3', DELIVERY_BACKOFF_MS: '5', WORKER_CONCURRENCY: '20' };

describe('delivery (BullMQ worker, simulated gateway)', () => {
  let harness: ApiWithWorkers;
  let api: TestApi;
  before(async () => {
    harness = await startApiWithWorkers(ENV);
    api = harness.api;
  });
  after(async () => harness.stop());

  const finished = (orgId: number, messageId: number) => harness.delivered(orgId, messageId);
  const send = (org: { id: number; apiKey: string }, to: string, body = 'hello', channel = to.includes('@') ? 'email' : 'sms') =>
    api.request('POST', '/messages', { org, body: { to, channel, body } });
  const message = async (org: { id: number; apiKey: string }, id: number) =>
    (await api.request('GET', `/messages/${id}`, { org })).body.message;
  const ledger = (orgId: number) =>
    rows<{ kind: string; amount: number; reference: string }>(
      api.deps.sharedDb,
      'SELECT kind, amount, reference FROM credit_ledger WHERE org_id = :orgId ORDER BY id',
      { orgId },
    );
  const ledgerSum = async (orgId: number) => (await ledger(orgId)).reduce((s, r) => s + Number(r.amount), 0);

  it('sends a message: SENT with the provider id, charged once, balance = ledger sum', async () => {
    const t = await createTenant(api.deps, { credits: 10 });
    const res = await send(t, '+15551230000', 'a'.repeat(200));
    await finished(t.id, res.body.message.id);
    const m = await message(t, res.body.message.id);
    expect(m).to.include({ status: 'SENT', cost: 2, attempts: 1, errorCode: null });
    expect(m.providerMessageId).to.match(/^sim_[0-9a-f]{24}$/);
    expect(m.sentAt).to.be.a('string');
    expect(await api.deps.repo.balance(t.id)).to.equal(8);
    expect((await ledger(t.id)).filter((r) => r.kind === 'debit')).to.deep.equal([
      { kind: 'debit', amount: -2, reference: debitReference(m.id) },
    ]);
    expect(await ledgerSum(t.id)).to.equal(8);
  });

  it('300 concurrent sends on a balance of 100 one-credit messages: exactly 100 SENT, the rest 402 or FAILED INSUFFICIENT_CREDITS, balance 0', async function () {
    this.timeout(120_000);
    const t = await createTenant(api.deps, { credits: 100 });
    const responses = await Promise.all(Array.from({ length: 300 }, (_, i) => send(t, `+1555000${String(i).padStart(4, '0')}`)));
    const accepted = responses.filter((r) => r.status === 202).map((r) => r.body.message.id as number);
    const odd = responses.filter((r) => !(r.status === 202 || (r.status === 402 && r.body.error.code === 'INSUFFICIENT_CREDITS')));
    expect(odd.map((r) => [r.status, r.body])).to.deep.equal([]);
    await mapWithConcurrency(accepted, 8, (id) => finished(t.id, id));
    const statuses = await rows<{ status: string; error_code: string | null; n: number }>(
      api.deps.sharedDb,
      `SELECT status, error_code, COUNT(*) AS n FROM \`${t.dbName}\`.messages GROUP BY status, error_code`,
    );
    const sent = statuses.find((s) => s.status === 'SENT');
    expect(Number(sent?.n)).to.equal(100);
    for (const s of statuses.filter((x) => x.status !== 'SENT'))
      expect(s).to.include({ status: 'FAILED', error_code: 'INSUFFICIENT_CREDITS' });
    expect(statuses.reduce((n, s) => n + Number(s.n), 0)).to.equal(accepted.length);
    expect(await api.deps.repo.balance(t.id)).to.equal(0);
    expect(await ledgerSum(t.id)).to.equal(0);
    expect((await ledger(t.id)).filter((r) => r.kind === 'refund')).to.have.length(0);
  });

  it('retries a transient failure with backoff, then FAILED on the last attempt and refunded exactly once', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const res = await send(t, '+15005550001');
    await finished(t.id, res.body.message.id);
    const m = await message(t, res.body.message.id);
    expect(m).to.include({ status: 'FAILED', errorCode: 'PROVIDER_UNAVAILABLE', attempts: 3 });
    expect((await ledger(t.id)).map((r) => [r.kind, Number(r.amount), r.reference])).to.deep.equal([
      ['grant', 5, 'initial-grant'],
      ['debit', -1, debitReference(m.id)],
      ['refund', 1, refundReference(m.id)],
    ]);
    expect(await api.deps.repo.balance(t.id)).to.equal(5);
  });

  it('fails a permanent failure at once (one attempt), refunded; the failed job is kept for inspection', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const sms = await send(t, '+15005550002');
    const email = await send(t, 'fail@example.com');
    await finished(t.id, sms.body.message.id);
    await finished(t.id, email.body.message.id);
    for (const id of [sms.body.message.id, email.body.message.id]) {
      expect(await message(t, id)).to.include({ status: 'FAILED', errorCode: 'RECIPIENT_REJECTED', attempts: 1 });
      const job = await Job.fromId(api.deps.deliveryQueue, deliveryJobId(t.id, id));
      expect(await job!.getState()).to.equal('failed');
    }
    expect(await api.deps.repo.balance(t.id)).to.equal(5);
    expect(await ledgerSum(t.id)).to.equal(5);
  });

  it('postpones a delivery on a database error without using up an attempt, and finishes it once the database is back', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const org = (await api.deps.repo.get(t.id))!;
    const root = rootDb();
    const account = accountOf(root, org.dbUser!, '%');
    try {
      // The tenant's user loses UPDATE: the worker can debit (shared DB) but not move the message on.
      await root.query(`REVOKE UPDATE ON ${grantTarget(org.dbName!)} FROM ${account}`);
      api.deps.tenantDbs.evict(t.id); // database privileges apply to new connections
      const res = await send(t, '+15551230077');
      const id = res.body.message.id as number;
      const jobId = deliveryJobId(t.id, id);
      await new Promise<void>((resolve) => {
        let seen = 0;
        const onDelayed = ({ jobId: delayed }: { jobId: string }) => {
          if (delayed === jobId && ++seen === 2) {
            harness.events.off('delayed', onDelayed);
            resolve();
          }
        };
        harness.events.on('delayed', onDelayed);
      });
      const job = (await Job.fromId<DeliveryJob>(api.deps.deliveryQueue, jobId))!;
      expect(job.attemptsMade, 'no attempt used up').to.equal(0);
      expect(job.data.outages).to.be.at.least(2);
      expect((await message(t, id)).status).to.equal('QUEUED');
      await root.query(`GRANT UPDATE ON ${grantTarget(org.dbName!)} TO ${account}`);
      api.deps.tenantDbs.evict(t.id);
      await finished(t.id, id);
      expect(await message(t, id)).to.include({ status: 'SENT', attempts: 1 });
      expect((await ledger(t.id)).filter((r) => r.kind !== 'grant').map((r) => r.kind)).to.deep.equal(['debit']);
      expect(await api.deps.repo.balance(t.id)).to.equal(4);
    } finally {
      await root.query(`GRANT UPDATE ON ${grantTarget(org.dbName!)} TO ${account}`).catch(() => undefined);
      await root.close();
    }
  });

  it('fails (uncharged) the queued messages of an org suspended before they were delivered', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const d = api.deps;
    const [{ id }] = (await rows<{ id: number }>(d.sharedDb, 'SELECT 1 AS id')) as [{ id: number }];
    await d.sharedDb.query(`INSERT INTO \`${t.dbName}\`.messages (\`to\`, channel, body, cost) VALUES ('+15551230088', 'sms', 'held', 1)`);
    expect((await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { status: 'SUSPENDED' } })).status).to.equal(200);
    const deliver = createDeliverMessage({
      orgs: d.repo,
      tenantDbs: d.tenantDbs,
      ledger: d.ledger,
      gateway: d.gateway,
      logger: createLogger({ level: 'silent' }),
    });
    expect(await deliver({ orgId: t.id, messageId: id, attemptsMade: 0, maxAttempts: 3 })).to.equal('FAILED');
    const [m] = await rows<{ status: string; error_code: string }>(
      d.sharedDb,
      `SELECT status, error_code FROM \`${t.dbName}\`.messages WHERE id = :id`,
      { id },
    );
    expect(m).to.deep.equal({ status: 'FAILED', error_code: 'ORG_SUSPENDED' });
    expect(await d.repo.balance(t.id)).to.equal(5);
    expect((await ledger(t.id)).filter((r) => r.kind !== 'grant')).to.deep.equal([]);
  });

  it('does nothing when a finished job runs again, and repairs a FAILED message whose refund a crash skipped', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const res = await send(t, '+15551239999');
    const id = res.body.message.id as number;
    await finished(t.id, id);
    const d = api.deps;
    const deliver = createDeliverMessage({
      orgs: d.repo,
      tenantDbs: d.tenantDbs,
      ledger: d.ledger,
      gateway: d.gateway,
      logger: createLogger({ level: 'silent' }),
    });
    const again = () => deliver({ orgId: t.id, messageId: id, attemptsMade: 1, maxAttempts: 3 });
    expect(await again()).to.equal('already-final');
    expect(await d.repo.balance(t.id)).to.equal(4);
    // A crash right after marking FAILED, before the refund: the next pickup refunds, once. (A FAILED row carries no
    // provider id: one that does was accepted by the provider, and is turned SENT instead: test/late-acceptance.test.ts.)
    await d.sharedDb.query(
      `UPDATE \`${t.dbName}\`.messages SET status = 'FAILED', error_code = 'RECIPIENT_REJECTED', provider_message_id = NULL, sent_at = NULL
       WHERE id = :id`,
      { replacements: { id } },
    );
    expect(await again()).to.equal('already-final');
    expect(await again()).to.equal('already-final');
    expect(await d.repo.balance(t.id)).to.equal(5);
    expect((await ledger(t.id)).filter((r) => r.kind === 'refund')).to.have.length(1);
  });
});

describe('HTTP gateway', () => {
  let server: http.Server;
  let url: string;
  const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  let answer: { status: number; body: string; delayMs?: number } = { status: 200, body: '{"id":"prov-1"}' };
  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        const reply = () => res.writeHead(answer.status, { 'Content-Type': 'application/json' }).end(answer.body);
        if (answer.delayMs) setTimeout(reply, answer.delayMs);
        else reply();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/send`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const gateway = () => createHttpGateway({ url, secret: 'gateway-secret-0123456789', timeoutMs: 200 });
  const msg = { idempotencyKey: '7-42', to: '+15551234567', channel: 'sms' as const, body: 'hi' };

  it('POSTs signed JSON with the idempotency key and returns the provider id', async () => {
    answer = { status: 200, body: '{"id":"prov-1"}' };
    expect(await gateway().send(msg)).to.deep.equal({ providerMessageId: 'prov-1' });
    const r = received.at(-1)!;
    expect(JSON.parse(r.body)).to.deep.equal({ id: '7-42', to: '+15551234567', channel: 'sms', body: 'hi' });
    expect(r.headers['idempotency-key']).to.equal('7-42');
    const ts = r.headers['x-gateway-timestamp'] as string;
    expect(r.headers['x-gateway-signature']).to.equal(gatewaySignature('gateway-secret-0123456789', ts, r.body));
    expect(r.headers['x-gateway-signature']).not.to.equal(gatewaySignature('another-secret-0123456789', ts, r.body));
  });

  for (const [status, kind] of [
    [500, TransientGatewayError],
    [503, TransientGatewayError],
    [429, TransientGatewayError],
    [400, PermanentGatewayError],
    [422, PermanentGatewayError],
  ] as const) {
    it(`treats ${status} as ${kind.name}`, async () => {
      answer = { status, body: '{"error":"x"}' };
      const err = await gateway()
        .send(msg)
        .catch((e: unknown) => e);
      expect(err).to.be.instanceOf(kind);
      expect((err as { code: string }).code).to.equal(`PROVIDER_HTTP_${status}`);
    });
  }

  it('treats 409 (a request with this idempotency key in progress) as in progress: neither a rejection nor a transient failure', async () => {
    answer = { status: 409, body: '{"error":"a request with this idempotency key is in progress"}' };
    const err = await gateway()
      .send(msg)
      .catch((e: unknown) => e);
    expect(err).to.be.instanceOf(InProgressGatewayError);
    expect(err).to.not.be.instanceOf(PermanentGatewayError);
    expect(err).to.not.be.instanceOf(TransientGatewayError);
    expect((err as { code: string }).code).to.equal('PROVIDER_IN_PROGRESS');
  });

  it('treats a timeout and an answer without an id as transient', async () => {
    answer = { status: 200, body: '{"id":"late"}', delayMs: 1000 };
    expect(
      await gateway()
        .send(msg)
        .catch((e: unknown) => e),
    )
      .to.be.instanceOf(TransientGatewayError)
      .with.property('code', 'PROVIDER_TIMEOUT');
    answer = { status: 200, body: '{}' };
    expect(
      await gateway()
        .send(msg)
        .catch((e: unknown) => e),
    )
      .to.be.instanceOf(TransientGatewayError)
      .with.property('code', 'PROVIDER_BAD_RESPONSE');
  });
});
