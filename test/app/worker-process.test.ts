/**
 * An operable worker process (`--role worker`, a real child): its own port (WORKER_PORT) serves /health, /ready and
 * /metrics (admin token); queue gauges come from workers, not from `--role api`; its log lines carry its role.
 */
import { expect } from 'chai';
import { createTenant, eventually, request, startApi, type TestApi } from '../helpers.js';
import { exited, killHard, startMain, type MainProcess } from '../processes.js';

/** The value of one sample line `name{labels} value` in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The admin-token scrape of a process's /metrics, as text. */
async function scrape(url: string): Promise<string> {
  const res = await request(url, 'GET', '/metrics', { admin: true });
  expect(res.status).to.equal(200);
  return res.body as string;
}

describe('a worker process (--role worker) on its own port', function () {
  this.timeout(60_000);
  let api: TestApi;
  let worker: MainProcess;
  const children: MainProcess[] = [];
  const spawn = async (env: Record<string, string>, role: 'api' | 'worker') => {
    const p = await startMain(env, role);
    children.push(p);
    return p;
  };

  before(async () => {
    api = await startApi(); // in this process, without workers: creates tenants and accepts messages
    worker = await spawn({}, 'worker');
  });
  after(async () => {
    await Promise.all(children.splice(0).map((c) => killHard(c.child)));
    await api?.stop();
  });

  it('prints its URL at start-up, on HOST and an ephemeral WORKER_PORT', () => {
    expect(worker.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(worker.lines.all()).to.contain(`${worker.url}/health`);
  });

  it('GET /health answers 200 {status: "ok"}', async () => {
    const res = await request(worker.url, 'GET', '/health');
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ status: 'ok' });
  });

  it('GET /ready answers 200 when the shared DB, Redis and both BullMQ workers are up', async () => {
    const res = await request(worker.url, 'GET', '/ready');
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({
      status: 'ready',
      checks: { sharedDb: 'ok', redis: 'ok', deliveryWorker: 'ok', webhookWorker: 'ok' },
    });
  });

  it('GET /metrics needs the admin token: 401 without it or with a wrong one', async () => {
    expect((await request(worker.url, 'GET', '/metrics')).status).to.equal(401);
    const wrong = await request(worker.url, 'GET', '/metrics', { headers: { Authorization: 'Bearer nope-nope-nope-nope' } });
    expect(wrong.status).to.equal(401);
  });

  it('GET /metrics with the token: the jobs this worker completed and, by default, the queue gauges', async () => {
    const t = await createTenant(api.deps, { credits: 10 });
    const sent = await api.request('POST', '/messages', { org: t, body: { to: '+15551234567', channel: 'sms', body: 'hi' } });
    expect(sent.status).to.equal(202);
    // The worker child delivers it (the test's API has no workers): its own counter says so.
    const delivered = await eventually(
      async () => (sample(await scrape(worker.url), 'jobs_completed_total{queue="deliveries"}') ?? 0) >= 1,
      15_000,
      100,
    );
    expect(delivered, 'the worker completed the delivery job').to.equal(true);
    const res = await request(worker.url, 'GET', '/metrics', { admin: true });
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const text = res.body as string;
    expect(sample(text, 'queue_jobs{queue="deliveries",state="completed"}')).to.be.at.least(1);
    expect(sample(text, 'queue_jobs{queue="webhooks",state="waiting"}')).to.equal(0);
    expect(text).to.contain('process_cpu_user_seconds_total');
  });

  it('every log line it writes is JSON with role "worker" (start-up lines and its access lines alike)', async () => {
    await request(worker.url, 'GET', '/health');
    await worker.lines.waitFor('"path":"/health"');
    const logs = worker.lines
      .all()
      .split('\n')
      .slice(0, -1) // the last piece may be a line still being written
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { message: string; role?: string });
    expect(logs.map((l) => l.message)).to.include.members(['shared database ready', 'workers started', 'request']);
    expect(logs.filter((l) => l.role !== 'worker')).to.deep.equal([]);
  });

  it('the API process (--role api) does not report queue_jobs by default; QUEUE_METRICS=on makes it', async () => {
    const [plain, forced] = await Promise.all([spawn({}, 'api'), spawn({ QUEUE_METRICS: 'on' }, 'api')]);
    const text = await scrape(plain.url);
    expect(text).to.contain('tenant_pools_open');
    expect(text).not.to.contain('queue_jobs');
    expect(sample(await scrape(forced.url), 'queue_jobs{queue="webhooks",state="waiting"}')).to.equal(0);
  });

  it('on SIGTERM exits 0 and its port stops answering', async () => {
    const p = await spawn({}, 'worker');
    expect((await request(p.url, 'GET', '/health')).status).to.equal(200);
    const done = exited(p.child);
    p.child.kill('SIGTERM');
    expect((await done).code).to.equal(0);
    const after = await fetch(`${p.url}/health`).then(
      () => 'answered',
      () => 'refused',
    );
    expect(after).to.equal('refused');
  });

  describe('with Redis unreachable (REDIS_URL of a port where nothing listens)', () => {
    let down: MainProcess;
    before(async () => {
      down = await spawn({ REDIS_URL: 'redis://127.0.0.1:1' }, 'worker');
    });

    it('still starts (its BullMQ workers keep retrying) and answers /health 200', async () => {
      expect(down.lines.all()).to.contain('workers started');
      expect((await request(down.url, 'GET', '/health')).status).to.equal(200);
    });

    it('answers /ready 503 with Retry-After, naming redis as unavailable', async () => {
      const res = await request(down.url, 'GET', '/ready');
      expect(res.status).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('1');
      expect(res.body).to.deep.equal({
        status: 'unavailable',
        checks: { sharedDb: 'ok', redis: 'unavailable', deliveryWorker: 'ok', webhookWorker: 'ok' },
      });
    });

    it('still serves /metrics with the token (the queue gauges are left out, not waited for)', async () => {
      const text = await scrape(down.url);
      expect(text).to.contain('jobs_completed_total');
      expect(sample(text, 'queue_jobs{queue="deliveries",state="waiting"}')).to.equal(undefined);
    });
  });
});
