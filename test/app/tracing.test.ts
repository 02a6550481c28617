/**
 * OpenTelemetry: one trace from POST /messages through the enqueue, the worker's job, the ledger, the send and the
 * status webhook, across an API process and a worker process (real processes, started with the tracing preload),
 * exported over OTLP/HTTP to a receiver started here. Every span carries the org id; log lines carry the trace id.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { killHard, startMain, type MainProcess } from '../processes.js';
import { createSecretBox } from '../../src/platform/lib/secrets.js';
import { ADMIN_TOKEN, TEST_ENV, request, rootDb, rows } from '../helpers.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';

const SERVER = 2;
const PRODUCER = 4;
const CONSUMER = 5;

describe('tracing (OpenTelemetry, OTLP over HTTP)', function () {
  this.timeout(90_000);
  let otlp: OtlpReceiver;
  let hooks: http.Server;
  let hookUrl: string;
  const webhooks: string[] = [];
  let api: MainProcess;
  let worker: MainProcess;
  const db = rootDb();

  before(async () => {
    otlp = await startOtlpReceiver();
    hooks = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        webhooks.push(req.url ?? '');
        hooks.emit('webhook');
        res.writeHead(204).end();
      });
    });
    hooks.listen(0, '127.0.0.1');
    await once(hooks, 'listening');
    hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`;
    const env = {
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: 'tenancy-test',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      LOG_LEVEL: 'info',
    };
    [api, worker] = await Promise.all([startMain(env, 'api'), startMain(env, 'worker')]);
  });
  after(async () => {
    await Promise.all([api && killHard(api.child), worker && killHard(worker.child)]);
    hooks?.closeAllConnections();
    hooks?.close();
    await otlp?.close();
    await db.close();
  });

  it('one trace runs from POST /messages to the status webhook across both processes, every span with the org id, and the logs carry its id', async () => {
    const created = await request(api.url, 'POST', '/orgs', { admin: true, body: { name: `traced ${Date.now()}`, credits: 10 } });
    expect(created.status).to.equal(201);
    const org = { id: created.body.org.id as number, apiKey: created.body.apiKey as string };
    expect((await request(api.url, 'PATCH', `/orgs/${org.id}`, { admin: true, body: { webhookUrl: hookUrl } })).status).to.equal(200);

    const webhook = once(hooks, 'webhook');
    const sent = await request(api.url, 'POST', '/messages', { org, body: { to: '+15551230000', channel: 'sms', body: 'traced hello' } });
    expect(sent.status).to.equal(202);
    await webhook;

    // The root: the API's server span of this very request (the org id it named).
    const isRoot = (s: ReceivedSpan) =>
      s.kind === SERVER && s.attributes['http.route'] === '/messages' && s.attributes['http.request.method'] === 'POST';
    await otlp.until((spans) => spans.some(isRoot));
    const root = otlp.spans.find(isRoot)!;
    const inTrace = () => otlp.spans.filter((s) => s.traceId === root.traceId);
    await otlp.until(
      () => inTrace().some((s) => s.name === 'webhook.notify') && inTrace().some((s) => s.name.startsWith('process webhooks')),
    );
    // The webhook job's span ends after its processor's: give the exporter of the last spans the time of one batch.
    await otlp.until(() => {
      const spans = inTrace();
      const ids = new Set(spans.map((s) => s.spanId));
      return spans.every((s) => s.spanId === root.spanId || (s.parentSpanId !== undefined && ids.has(s.parentSpanId)));
    });

    const spans = inTrace();
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const parentOf = (s: ReceivedSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined);
    const under = (s: ReceivedSpan, ancestor: ReceivedSpan): boolean => {
      for (let p = parentOf(s); p; p = parentOf(p)) if (p === ancestor) return true;
      return false;
    };
    const one = (name: string | RegExp, kind?: number) => {
      const found = spans.filter(
        (s) => (typeof name === 'string' ? s.name === name : name.test(s.name)) && (kind === undefined || s.kind === kind),
      );
      expect(found, `spans named ${String(name)}`).to.have.length.greaterThan(0);
      return found[0]!;
    };

    // API process: request → enqueue.
    expect(root.parentSpanId).to.equal(undefined);
    expect(root.resource).to.include({ 'service.name': 'tenancy-test', 'tenancy.role': 'api' });
    const enqueue = one(/^add deliveries/, PRODUCER);
    expect(under(enqueue, root)).to.equal(true);
    expect(enqueue.resource['tenancy.role']).to.equal('api');

    // Worker process: the job, under the enqueue; the ledger, the send and the webhook's enqueue under the job.
    const job = one(/^process deliveries/, CONSUMER);
    expect(job.resource['tenancy.role']).to.equal('worker');
    expect(parentOf(job)).to.equal(enqueue);
    const ledger = one('ledger.apply');
    expect(ledger.attributes).to.include({ 'ledger.kind': 'debit', 'ledger.outcome': 'applied' });
    expect(
      spans.some(
        (s) => under(s, ledger) && String(s.attributes['db.query.text'] ?? s.attributes['db.statement']).startsWith('CALL ledger_apply'),
      ),
    ).to.equal(true);
    const send = one('gateway.send');
    expect(send.attributes['message.channel']).to.equal('sms');
    const webhookEnqueue = one(/^add webhooks/, PRODUCER);
    for (const s of [ledger, send, webhookEnqueue]) expect(under(s, job), s.name).to.equal(true);

    // The webhook job, under its enqueue; the POST under the notify span.
    const webhookJob = one(/^process webhooks/, CONSUMER);
    expect(parentOf(webhookJob)).to.equal(webhookEnqueue);
    const notify = one('webhook.notify');
    expect(under(notify, webhookJob)).to.equal(true);
    expect(notify.attributes).to.include({ 'webhook.status': 'SENT', 'webhook.outcome': 'delivered' });
    expect(spans.some((s) => s.kind === 3 && s.attributes['http.request.method'] === 'POST' && under(s, notify))).to.equal(true);

    // Database and Redis spans of both processes are in the same trace.
    expect(spans.some((s) => s.resource['tenancy.role'] === 'api' && s.attributes['db.system.name'] === 'mysql')).to.equal(true);
    expect(spans.some((s) => s.resource['tenancy.role'] === 'worker' && s.attributes['db.system.name'] === 'mysql')).to.equal(true);
    expect(spans.some((s) => s.attributes['db.system.name'] === 'redis' || s.attributes['db.system'] === 'redis')).to.equal(true);

    // Every span carries the org id, as an attribute.
    const without = spans.filter((s) => s.attributes['org.id'] !== org.id).map((s) => `${s.name} (${String(s.resource['tenancy.role'])})`);
    expect(without).to.deep.equal([]);

    // No span holds a secret: statements are masked (the tenant's database password is in a CREATE USER of POST /orgs).
    const [row] = await rows<{ enc: string }>(db, `SELECT db_password_enc AS enc FROM \`${TEST_ENV.DB_NAME}\`.orgs WHERE id = :id`, {
      id: org.id,
    });
    const secrets = [org.apiKey, ADMIN_TOKEN, createSecretBox(TEST_ENV.SECRET_KEY!).decrypt(row!.enc)];
    const exported = JSON.stringify(otlp.spans);
    for (const secret of secrets) expect(exported).not.to.contain(secret);
    expect(otlp.spans.some((s) => /IDENTIFIED BY \?/.test(String(s.attributes['db.query.text'])))).to.equal(true);

    // Log lines written inside the trace carry its id (winston instrumentation), in both processes.
    const traced = (p: MainProcess) =>
      p.lines
        .all()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.trace_id === root.traceId);
    expect(traced(api).map((l) => l.message)).to.include('request');
    expect(traced(worker).map((l) => l.message)).to.include.members(['message sent', 'webhook delivered']);
  });
});
