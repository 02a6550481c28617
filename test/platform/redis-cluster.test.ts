/**
 * Cluster mode (REDIS_CLUSTER_NODES) against a real local Redis Cluster of 3 masters and 3 replicas
 * (scripts/local-redis-cluster.ts): the messaging flow, rate limits, invalidation across two API processes, fairness,
 * the reconciler, and a master killed mid-flood (its replica takes over): every stored message reaches SENT or
 * FAILED, none is charged twice, the API answers only 202 or 503 meanwhile and recovers without a restart.
 */
import { expect } from 'chai';
import { Cluster } from 'ioredis';
import { startLocalRedisCluster, type LocalRedisCluster } from '../../scripts/local-redis-cluster.js';
import { mapWithConcurrency } from '../../src/platform/lib/concurrency.js';
import { ADMIN_TOKEN, RUN, createTenant, eventually, request, rows, startApi, testConfig, type TestApi } from '../helpers.js';
import { killHard, startMain, type MainProcess } from '../processes.js';
import { startWorkers, type Workers } from '../../src/messages/entry-points/queue/workers.js';

type Tenant = { id: number; apiKey: string; dbName: string };

const send = (base: string, t: Tenant, i: number, label = 'm') =>
  request(base, 'POST', '/messages', {
    org: t,
    body: { to: `+1555700${String(i).padStart(4, '0')}`, channel: 'sms', body: `${label} ${i}` },
  });

describe('on Redis Cluster (3 masters, 3 replicas)', function () {
  this.timeout(240_000);
  let cluster: LocalRedisCluster;
  let env: Record<string, string>;

  before(async () => {
    cluster = await startLocalRedisCluster();
    env = { REDIS_CLUSTER_NODES: cluster.nodes.join(',') };
  });
  after(async () => {
    await cluster?.destroy();
  });

  /** Counts of the tenant's messages by status, and of its debits per message. */
  async function settle(api: TestApi, t: Tenant) {
    const [m] = await rows<{ open: number; sent: number; failed: number; total: number }>(
      api.deps.sharedDb,
      `SELECT SUM(status IN ('QUEUED', 'SENDING')) AS open, SUM(status = 'SENT') AS sent, SUM(status = 'FAILED') AS failed,
              COUNT(*) AS total FROM \`${t.dbName}\`.messages`,
    );
    const twice = await rows(
      api.deps.sharedDb,
      "SELECT message_id FROM credit_ledger WHERE org_id = :id AND kind = 'debit' GROUP BY message_id HAVING COUNT(*) > 1",
      { id: t.id },
    );
    const [l] = await rows<{ debits: number; total: number }>(
      api.deps.sharedDb,
      "SELECT SUM(kind = 'debit') AS debits, SUM(amount) AS total FROM credit_ledger WHERE org_id = :id",
      { id: t.id },
    );
    return {
      open: Number(m!.open ?? 0),
      sent: Number(m!.sent ?? 0),
      failed: Number(m!.failed ?? 0),
      total: Number(m!.total),
      chargedTwice: twice.length,
      debits: Number(l!.debits ?? 0),
      ledgerSum: Number(l!.total ?? 0),
      balance: await api.deps.repo.balance(t.id),
    };
  }

  describe('in one process', () => {
    let api: TestApi;
    let workers: Workers;
    before(async () => {
      const overrides = { ...env, RECONCILE_AFTER_MS: '500', RECONCILE_INTERVAL_MS: '300' };
      api = await startApi(overrides);
      workers = startWorkers(testConfig(overrides), api.deps);
    });
    after(async () => {
      await workers.close();
      await api.stop();
    });

    it('uses a hash-tagged prefix: every key of the project is in one slot', async () => {
      expect(api.deps.config.queuePrefix).to.equal(`{${RUN}}`);
      const t = await createTenant(api.deps, { credits: 3 });
      expect((await send(api.url, t, 0)).status).to.equal(202);
      expect(await eventually(async () => (await settle(api, t)).sent === 1, 20_000)).to.equal(true);
      const client = new Cluster(cluster.nodes);
      try {
        const owner = await cluster.masterFor(`{${RUN}}`);
        const byNode = await Promise.all(
          client.nodes('master').map(async (n) => ({ port: n.options.port, keys: await n.keys(`*${RUN}*`) })),
        );
        const elsewhere = byNode.filter((n) => n.port !== owner).flatMap((n) => n.keys);
        expect(elsewhere).to.deep.equal([]);
        const here = byNode.find((n) => n.port === owner)!.keys;
        expect(here.some((k) => k.startsWith(`{${RUN}}:deliveries:`))).to.equal(true);
        expect(here.every((k) => k.startsWith(`{${RUN}}:`))).to.equal(true);
      } finally {
        client.disconnect();
      }
    });

    it('answers /ready and serves the dashboard over the cluster', async () => {
      const ready = await api.request('GET', '/ready');
      expect([ready.status, ready.body?.checks?.redis]).to.deep.equal([200, 'ok']);
      const auth = `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}`;
      const board = await api.request('GET', '/admin/queues/api/queues', { headers: { Authorization: auth } });
      expect(board.status).to.equal(200);
      expect((board.body.queues as { name: string }[]).map((q) => q.name).sort()).to.deep.equal(['deliveries', 'webhooks']);
    });

    it('delivers messages of several tenants, each debited once; rate limits hold', async () => {
      const a = await createTenant(api.deps, { credits: 40 });
      const b = await createTenant(api.deps, { credits: 40 });
      const statuses = await mapWithConcurrency(
        Array.from({ length: 60 }, (_, i) => i),
        10,
        async (i) => (await send(api.url, i % 2 ? a : b, i)).status,
      );
      expect(statuses.filter((s) => s !== 202)).to.deep.equal([]);
      for (const t of [a, b]) {
        expect(await eventually(async () => (await settle(api, t)).sent === 30, 30_000)).to.equal(true);
        const s = await settle(api, t);
        expect({ twice: s.chargedTwice, debits: s.debits, balance: s.balance, sum: s.ledgerSum }).to.deep.equal({
          twice: 0,
          debits: 30,
          balance: 10,
          sum: 10,
        });
      }
      expect(
        (await api.request('PATCH', `/orgs/${a.id}`, { admin: true, body: { rateLimit: { points: 2, duration: 60 } } })).status,
      ).to.equal(200);
      const limited = [];
      for (let i = 0; i < 3; i++) limited.push((await api.request('GET', '/org', { org: a })).status);
      expect(limited).to.deep.equal([200, 200, 429]);
    });

    it('fair: a quiet tenant’s messages pass another’s backlog', async () => {
      await workers.close();
      const loud = await createTenant(api.deps, { credits: 600 });
      const quiet = await createTenant(api.deps, { credits: 5 });
      await mapWithConcurrency(
        Array.from({ length: 600 }, (_, i) => i),
        20,
        (i) => send(api.url, loud, i, 'loud'),
      );
      for (let i = 0; i < 5; i++) expect((await send(api.url, quiet, i, 'quiet')).status).to.equal(202);
      workers = startWorkers(testConfig({ ...env, RECONCILE_AFTER_MS: '500', RECONCILE_INTERVAL_MS: '300' }), api.deps);
      expect(await eventually(async () => (await settle(api, quiet)).sent === 5, 30_000, 10)).to.equal(true);
      expect((await settle(api, loud)).open, "the loud tenant's backlog still waiting").to.be.greaterThan(300);
      expect(await eventually(async () => (await settle(api, loud)).sent === 600, 60_000, 100)).to.equal(true);
    });

    it('the reconciler enqueues a stored message that has no job (one lock for all processes, in the same slot)', async () => {
      const t = await createTenant(api.deps, { credits: 1 });
      await api.deps.sharedDb.query(
        `INSERT INTO \`${t.dbName}\`.messages (\`to\`, channel, body, cost, updated_at) VALUES ('+15557009999', 'sms', 'orphan', 1, NOW(3) - INTERVAL 1 MINUTE)`,
      );
      // A bound, not a delay: it passes at the first sweep (within a few seconds). 60 s because one CI run saw the
      // database stall long enough for the API to mark the server down, which holds sweeps back until a probe answers.
      expect(await eventually(async () => (await settle(api, t)).sent === 1, 60_000)).to.equal(true);
    });
  });

  describe('across processes', () => {
    const procs: MainProcess[] = [];
    let api: TestApi;
    before(async () => {
      // The test's own view of the shared DB (its Redis clients are the cluster's too).
      api = await startApi(env);
    });
    after(async () => {
      await Promise.all(procs.map((p) => killHard(p.child)));
      await api.stop();
    });

    it('a change made through one API process is seen by another at once (sharded pub/sub)', async () => {
      const [one, two] = await Promise.all([startMain(env, 'api'), startMain(env, 'api')]);
      procs.push(one, two);
      const t = await createTenant(api.deps, { credits: 1 });
      expect((await request(two.url, 'GET', '/org', { org: t })).status).to.equal(200); // cached there now
      expect((await request(one.url, 'PATCH', `/orgs/${t.id}`, { admin: true, body: { status: 'SUSPENDED' } })).status).to.equal(200);
      expect(
        await eventually(async () => (await request(two.url, 'GET', '/org', { org: t })).body?.error?.code === 'ORG_SUSPENDED', 3000),
      ).to.equal(true);
    });

    it('a master killed mid-flood: its replica takes over; every stored message ends SENT or FAILED, none charged twice; only 202 or 503 meanwhile; recovers without a restart', async () => {
      const worker = await startMain({ ...env, RECONCILE_AFTER_MS: '3000', RECONCILE_INTERVAL_MS: '1000' }, 'worker');
      const front = await startMain(env, 'api');
      procs.push(worker, front);
      const t = await createTenant(api.deps, { credits: 1000 });
      const owner = await cluster.masterFor(`{${RUN}}`);
      let accepted = 0;
      let killed: Promise<void> | undefined;
      const statuses = await mapWithConcurrency(
        Array.from({ length: 600 }, (_, i) => i),
        8,
        async (i) => {
          const res = await send(front.url, t, i, 'flood');
          if (res.status === 202 && ++accepted === 150) killed = cluster.kill(owner);
          return res.status === 202 ? 202 : `${res.status} ${res.body?.error?.code}`;
        },
      );
      await killed;
      const refused = statuses.filter((s) => s !== 202);
      expect(
        refused.every((s) => typeof s === 'string' && s.startsWith('503 ')),
        JSON.stringify(refused.slice(0, 5)),
      ).to.equal(true);
      await cluster.waitHealthy(30_000);
      expect(await cluster.masterFor(`{${RUN}}`)).to.not.equal(owner);

      // Recovered without a restart.
      let acceptedAfter = 0;
      let refusedAfter = 0;
      expect(
        await eventually(
          async () => {
            const status = (await send(front.url, t, 9000, 'after')).status;
            if (status === 202) acceptedAfter++;
            else refusedAfter++;
            return status === 202;
          },
          15_000,
          200,
        ),
      ).to.equal(true);
      expect(await eventually(async () => (await settle(api, t)).open === 0, 90_000, 250)).to.equal(true);
      const s = await settle(api, t);
      expect(s.chargedTwice).to.equal(0);
      // Accepted (202) → SENT; refused (503 QUEUE_UNAVAILABLE) → FAILED, never sent, never charged.
      expect({ sent: s.sent, failed: s.failed, total: s.total }).to.deep.equal({
        sent: statuses.length - refused.length + acceptedAfter,
        failed: refused.length + refusedAfter,
        total: statuses.length + acceptedAfter + refusedAfter,
      });
      expect(s.debits).to.equal(s.sent);
      expect(s.balance).to.equal(s.ledgerSum);
      expect(s.balance).to.equal(1000 - s.sent);
      await cluster.start(owner); // back as a replica
      await cluster.waitHealthy(30_000);
    });
  });
});
