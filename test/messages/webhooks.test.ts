import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Job, QueueEvents } from 'bullmq';
import { expect } from 'chai';
import { WEBHOOK_QUEUE, webhookJobId, type WebhookJob } from '../../src/platform/queue/queues.js';
import { signWebhook } from '../../src/platform/webhooks/signature.js';
import { createTenant, rows, startApiWithWorkers, type ApiWithWorkers, type TestApi } from '../helpers.js';

const ENV = {
  WEBHOOK_ALLOW_PRIVATE: 'true', // the receivers here listen on 127.0.0.1
  DELIVERY_ATTEMPTS: '2',
  DELIVERY_BACKOFF_MS: '5',
  WEBHOOK_ATTEMPTS: '3',
  WEBHOOK_BACKOFF_MS: '5',
  WEBHOOK_TIMEOUT_MS: '1000',
};

describe('status webhooks', () => {
  let harness: ApiWithWorkers;
  let api: TestApi;
  let events: QueueEvents;
  let receiver: http.Server;
  let receiverUrl: string;
  const received: { path: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  /** Status codes to answer, per path, in order; 200 once exhausted. */
  const script = new Map<string, number[]>();

  before(async () => {
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ path: req.url!, headers: req.headers, body });
        res.writeHead(script.get(req.url!)?.shift() ?? 200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    harness = await startApiWithWorkers(ENV, { queue: WEBHOOK_QUEUE });
    ({ api, events } = harness);
  });
  after(async () => {
    await harness.stop();
    receiver.closeAllConnections();
    receiver.close();
  });

  /** Sets the org's webhook URL through the admin API; returns the signing secret it was issued. */
  async function subscribe(orgId: number, path: string): Promise<string> {
    const res = await api.request('PATCH', `/orgs/${orgId}`, { admin: true, body: { webhookUrl: `${receiverUrl}${path}` } });
    expect(res.status).to.equal(200);
    expect(res.body.webhookSecret).to.match(/^whsec_[A-Za-z0-9+/=]+$/);
    return res.body.webhookSecret;
  }
  /** Sends a message and waits for its webhook job to end (completed or failed for good). */
  async function sendAndWait(org: { id: number; apiKey: string }, to: string, status: WebhookJob['status']) {
    const res = await api.request('POST', '/messages', { org, body: { to, channel: 'sms', body: 'hi' } });
    const messageId = res.body.message.id as number;
    const id = webhookJobId({ orgId: org.id, messageId, status });
    // The webhook job only exists once delivery finished: wait for its 'added' event if needed.
    let job = await Job.fromId<WebhookJob>(api.deps.webhookQueue, id);
    if (!job) {
      await new Promise<void>((resolve) => {
        const onAdded = ({ jobId }: { jobId: string }) => {
          if (jobId === id) {
            events.off('added', onAdded);
            resolve();
          }
        };
        events.on('added', onAdded);
        void Job.fromId(api.deps.webhookQueue, id).then((j) => {
          if (j) {
            events.off('added', onAdded);
            resolve();
          }
        });
      });
      job = await Job.fromId<WebhookJob>(api.deps.webhookQueue, id);
    }
    const outcome = await job!.waitUntilFinished(events).then(
      () => 'completed',
      () => 'failed',
    );
    return { messageId, jobId: id, outcome };
  }

  it('posts each final status, signed with the org secret (Standard Webhooks headers)', async () => {
    const t = await createTenant(api.deps);
    const secret = await subscribe(t.id, '/ok');
    const sent = await sendAndWait(t, '+15551230001', 'SENT');
    const failed = await sendAndWait(t, '+15005550002', 'FAILED');
    expect([sent.outcome, failed.outcome]).to.deep.equal(['completed', 'completed']);
    for (const [{ jobId, messageId }, type, status] of [
      [sent, 'message.sent', 'SENT'],
      [failed, 'message.failed', 'FAILED'],
    ] as const) {
      const hit = received.find((r) => r.headers['webhook-id'] === jobId)!;
      expect(hit.path).to.equal('/ok');
      const ts = Number(hit.headers['webhook-timestamp']);
      expect(hit.headers['webhook-signature']).to.equal(signWebhook(secret, jobId, ts, hit.body));
      expect(hit.headers['webhook-signature']).not.to.equal(signWebhook('whsec_QW5vdGhlclNlY3JldA==', jobId, ts, hit.body));
      const payload = JSON.parse(hit.body);
      expect(payload.type).to.equal(type);
      expect(payload.data).to.include({ id: messageId, orgId: t.id, status });
      expect(payload.data).not.to.have.property('body');
    }
  });

  it('retries an endpoint that answers 500, with the same webhook-id', async () => {
    const t = await createTenant(api.deps);
    await subscribe(t.id, '/flaky');
    script.set('/flaky', [500, 503]);
    const r = await sendAndWait(t, '+15551230002', 'SENT');
    expect(r.outcome).to.equal('completed');
    const hits = received.filter((x) => x.headers['webhook-id'] === r.jobId);
    expect(hits).to.have.length(3);
    expect(new Set(hits.map((h) => h.body)).size).to.equal(1);
  });

  it('never blocks delivery: with an endpoint that always fails the message is still SENT, the webhook job ends failed', async () => {
    const t = await createTenant(api.deps);
    await subscribe(t.id, '/down');
    script.set('/down', [500, 500, 500, 500]);
    const r = await sendAndWait(t, '+15551230003', 'SENT');
    expect(r.outcome).to.equal('failed');
    const [m] = await rows<{ status: string }>(api.deps.sharedDb, `SELECT status FROM \`${t.dbName}\`.messages WHERE id = :id`, {
      id: r.messageId,
    });
    expect(m?.status).to.equal('SENT');
  });

  it('issues a secret once, keeps it when the URL changes, and rotates it on request', async () => {
    const t = await createTenant(api.deps);
    await subscribe(t.id, '/a');
    const moved = await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { webhookUrl: `${receiverUrl}/b` } });
    expect(moved.body).not.to.have.property('webhookSecret');
    const rotated = await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { rotateWebhookSecret: true } });
    expect(rotated.body.webhookSecret).to.match(/^whsec_/);
    const shown = await api.request('GET', `/orgs/${t.id}`, { admin: true });
    expect(JSON.stringify(shown.body)).not.to.contain('whsec_');
  });
});
