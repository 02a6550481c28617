import { expect } from 'chai';
import { startMetricsServer } from '../../src/platform/metrics/metrics-server.js';
import { createTenant, startApiWithWorkers, type ApiWithWorkers, type TestApi } from '../helpers.js';

/** The value of one sample line `name{labels} value` in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics', () => {
  let harness: ApiWithWorkers;
  let api: TestApi;
  before(async () => {
    harness = await startApiWithWorkers();
    api = harness.api;
  });
  after(async () => harness.stop());

  it('needs the admin token: 401 without it or with a wrong one', async () => {
    expect((await api.request('GET', '/metrics')).status).to.equal(401);
    expect((await api.request('GET', '/metrics', { headers: { Authorization: 'Bearer nope-nope-nope-nope' } })).status).to.equal(401);
    expect((await api.request('GET', '/metrics?token=test-admin-token-0123456789')).status).to.equal(401);
  });

  it('exposes HTTP timings by route, pools, caches, queues, jobs and credits in Prometheus text format', async () => {
    const t = await createTenant(api.deps, { credits: 10 });
    await api.request('GET', '/org', { org: t });
    const sent = await api.request('POST', '/messages', { org: t, body: { to: '+15551234567', channel: 'sms', body: 'hi' } });
    await harness.delivered(t.id, sent.body.message.id);

    const res = await api.request('GET', '/metrics', { admin: true });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const text = res.body as string;
    expect(sample(text, 'http_request_duration_seconds_count{method="GET",route="/org",status="200"}')).to.be.at.least(1);
    expect(sample(text, 'http_request_duration_seconds_count{method="POST",route="/messages",status="202"}')).to.be.at.least(1);
    expect(text).not.to.match(/route="\/messages\/\d+"/);
    expect(sample(text, 'tenant_pools_open')).to.be.at.least(1);
    expect(sample(text, 'tenant_db_connections')).to.be.at.least(1);
    for (const name of [
      'tenant_db_connections_in_use',
      'tenant_pool_cache_hits_total',
      'tenant_pool_cache_misses_total',
      'tenant_pool_cache_evictions_total',
      'org_cache_hits_total',
      'org_cache_misses_total',
    ]) {
      expect(sample(text, name), name).to.be.a('number');
    }
    expect(sample(text, 'queue_jobs{queue="deliveries",state="completed"}')).to.be.at.least(1);
    expect(sample(text, 'queue_jobs{queue="webhooks",state="waiting"}')).to.equal(0);
    expect(sample(text, 'jobs_completed_total{queue="deliveries"}')).to.be.at.least(1);
    expect(sample(text, 'credits_debited_total')).to.be.at.least(1);
    expect(text).to.contain('process_cpu_user_seconds_total');
    expect(text).to.contain('nodejs_eventloop_lag_seconds');
  });

  it('is served without credentials on METRICS_PORT, bound to 127.0.0.1 only', async () => {
    const server = await startMetricsServer(api.deps.metrics.registry, 0);
    try {
      expect(server.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const res = await fetch(server.url);
      expect(res.status).to.equal(200);
      expect(await res.text()).to.contain('tenant_pools_open');
      expect((await fetch(server.url.replace('/metrics', '/other'))).status).to.equal(404);
    } finally {
      await server.close();
    }
  });
});
