/**
 * Per-org concurrency (src/platform/queue/org-permits.ts, src/platform/queue/worker-gate.ts): an org's deliveries never run more than its cap
 * at once across two real worker processes, while another org uses what it needs; the cap is set with the CLI and
 * PATCH /orgs/:id and shown by GET /orgs/:id/delivery, bin/tenant top and the workers' metrics. A slow webhook
 * endpoint holds at most ORG_WEBHOOK_CONCURRENCY webhook slots, so another org's webhooks still go out.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { mapWithConcurrency } from '../../src/platform/lib/concurrency.js';
import { createOrgPermits } from '../../src/platform/queue/org-permits.js';
import { RUN, cli, request, createTenant, eventually, rows, startApi, startApiWithWorkers, type TestApi } from '../helpers.js';
import { killHard, startMain, type MainProcess } from '../processes.js';

/**
 * A provider that answers after `delayMs` and records, per org (its uid, from the idempotency key `<uid>-<id>`), the
 * most messages it had in flight at once. Counted by message, not request: a stalled job taken over while its first
 * run still waits here sends the same message twice (the provider dedupes by key), and that is still one job.
 */
async function startProvider(delayMs: number) {
  const running = new Map<string, Map<string, number>>();
  const peak = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const key = String(req.headers['idempotency-key']);
    const uid = key.replace(/-\d+$/, '');
    const sends = running.get(uid) ?? running.set(uid, new Map()).get(uid)!;
    sends.set(key, (sends.get(key) ?? 0) + 1);
    peak.set(uid, Math.max(peak.get(uid) ?? 0, sends.size));
    req.resume();
    setTimeout(() => {
      const left = sends.get(key)! - 1;
      if (left) sends.set(key, left);
      else sends.delete(key);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ id: `p-${key}` }));
    }, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/send`,
    peak,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

type Tenant = { id: number; apiKey: string; dbName: string };

async function uidOf(api: TestApi, orgId: number): Promise<string> {
  return (await api.deps.repo.get(orgId))!.uid;
}

describe('per-org delivery limits', function () {
  this.timeout(120_000);

  describe('the slots in Redis', () => {
    const redis = new Redis('redis://127.0.0.1:6379');
    const prefix = `${RUN}-slots`;
    let clock = 1_000_000;
    const slots = createOrgPermits({ redis, prefix, queue: 'q', leaseMs: 1000, now: () => clock });
    after(async () => {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    });

    it('grants up to the limit, parks the rest in order, hands a released slot to the oldest parked job; a dead holder’s slot comes back after its lease', async () => {
      expect(await slots.acquire(1, 'a', 2)).to.deep.equal({ granted: true, parked: 0 });
      expect(await slots.acquire(1, 'b', 2)).to.deep.equal({ granted: true, parked: 0 });
      expect(await slots.acquire(1, 'c', 2)).to.deep.equal({ granted: false, parked: 1 });
      expect(await slots.acquire(1, 'd', 2)).to.deep.equal({ granted: false, parked: 2 });
      // Parked again (woken by its own delay): keeps its place in line.
      expect(await slots.acquire(1, 'c', 2)).to.deep.equal({ granted: false, parked: 1 });
      expect(await slots.acquire(2, 'x', 2)).to.deep.equal({ granted: true, parked: 0 });
      expect(await slots.load(1)).to.deep.equal({ orgId: 1, inFlight: 2, parked: 2 });
      expect(await slots.busiest(5)).to.deep.equal([
        { orgId: 1, inFlight: 2, parked: 2 },
        { orgId: 2, inFlight: 1, parked: 0 },
      ]);

      // 'a' finishes: its slot goes to 'c', the oldest parked, so a fresh job cannot take it first.
      expect(await slots.release(1, 'a')).to.equal('c');
      expect(await slots.acquire(1, 'e', 2)).to.deep.equal({ granted: false, parked: 2 });
      expect(await slots.acquire(1, 'c', 2)).to.deep.equal({ granted: true, parked: 0 });
      expect(await slots.load(1)).to.deep.equal({ orgId: 1, inFlight: 2, parked: 2 });

      // 'c' keeps renewing while it runs; 'b' dies holding its slot: after the lease, 'd' gets it.
      clock += 600;
      expect(await slots.renew(1, 'c')).to.equal(true);
      clock += 600;
      expect(await slots.acquire(1, 'd', 2)).to.deep.equal({ granted: true, parked: 0 });
      expect(await slots.load(1)).to.deep.equal({ orgId: 1, inFlight: 2, parked: 1 });
      expect(await slots.renew(1, 'b')).to.equal(false);

      // A release that does not wake leaves the parked job parked.
      expect(await slots.release(1, 'd', false)).to.equal(undefined);
      expect(await slots.release(1, 'c')).to.equal('e');
      expect(await slots.release(1, 'e')).to.equal(undefined);
      expect(await slots.release(2, 'x')).to.equal(undefined);
      expect(await slots.busiest(5)).to.deep.equal([]);
    });

    it('the busiest list never keeps a crashed worker’s leases: expired ones are dropped and the summary set exactly', async () => {
      expect(await slots.acquire(5, 'crashed-1', 3)).to.deep.include({ granted: true });
      expect(await slots.acquire(5, 'crashed-2', 3)).to.deep.include({ granted: true });
      expect(await slots.busiest(5)).to.deep.equal([{ orgId: 5, inFlight: 2, parked: 0 }]);
      clock += 1001;
      expect(await slots.busiest(5)).to.deep.equal([]);
      expect(await redis.zscore(`${prefix}:org-slots:q`, '5')).to.equal(null);
    });

    it('keeps every key of one queue under the prefix (one hash slot when the prefix carries a hash tag)', async () => {
      await slots.acquire(3, 'k', 1);
      await slots.acquire(3, 'l', 1);
      const keys = (await redis.keys(`*${RUN}-slots*`)).sort();
      expect(keys).to.deep.equal([
        `${prefix}:org-parked:q`,
        `${prefix}:org-parked:q:3`,
        `${prefix}:org-slots:q`,
        `${prefix}:org-slots:q:3`,
      ]);
    });
  });

  describe('the admin surface', () => {
    let api: TestApi;
    before(async () => {
      api = await startApi();
    });
    after(() => api.stop());

    it('PATCH sets and clears deliveryConcurrency; GET /orgs/:id/delivery shows the cap and the load', async () => {
      const t = await createTenant(api.deps, { credits: 5 });
      let res = await api.request('GET', `/orgs/${t.id}/delivery`, { admin: true });
      expect(res.status).to.equal(200);
      expect(res.body.delivery).to.deep.equal({
        orgId: t.id,
        concurrency: { limit: 20, source: 'default' },
        deliveries: { inFlight: 0, parked: 0, queued: 0, sending: 0 },
        webhooks: { inFlight: 0, parked: 0, limit: 4 },
      });
      res = await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { deliveryConcurrency: 3 } });
      expect(res.status).to.equal(200);
      expect(res.body.org.deliveryConcurrency).to.equal(3);
      // No worker runs here: the message stays QUEUED.
      expect((await api.request('POST', '/messages', { org: t, body: { to: '+15550001', channel: 'sms', body: 'hi' } })).status).to.equal(
        202,
      );
      res = await api.request('GET', `/orgs/${t.id}/delivery`, { admin: true });
      expect(res.body.delivery.concurrency).to.deep.equal({ limit: 3, source: 'org' });
      expect(res.body.delivery.deliveries).to.deep.equal({ inFlight: 0, parked: 0, queued: 1, sending: 0 });
      res = await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { deliveryConcurrency: null } });
      expect(res.body.org.deliveryConcurrency).to.equal(null);
    });

    it('refuses a bad deliveryConcurrency (400 VALIDATION_FAILED) and an unknown org (404 ORG_NOT_FOUND)', async () => {
      const t = await createTenant(api.deps, { credits: 0 });
      for (const bad of [0, 1001, 1.5, 'five', -1, true]) {
        const res = await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { deliveryConcurrency: bad } });
        expect(res.status, JSON.stringify(bad)).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_FAILED');
      }
      const missing = await api.request('GET', '/orgs/4000000000/delivery', { admin: true });
      expect([missing.status, missing.body.error.code]).to.deep.equal([404, 'ORG_NOT_FOUND']);
      const badId = await api.request('GET', '/orgs/abc/delivery', { admin: true });
      expect([badId.status, badId.body.error.code]).to.deep.equal([400, 'VALIDATION_FAILED']);
      const anonymous = await api.request('GET', `/orgs/${t.id}/delivery`);
      expect([anonymous.status, anonymous.body.error.code]).to.deep.equal([401, 'AUTH_REQUIRED']);
    });

    it('bin/tenant limits shows, sets and resets the cap; refuses bad values with exit code 2', async () => {
      const t = await createTenant(api.deps, { credits: 0 });
      let r = await cli(['limits', String(t.id), '--delivery-concurrency', '7', '--json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json.delivery.concurrency).to.deep.equal({ limit: 7, source: 'org' });
      r = await cli(['limits', String(t.id)]);
      expect(r.stdout).to.contain(`org ${t.id}: deliveries at most 7 at once (the org's own)`);
      r = await cli(['limits', String(t.id), '--delivery-concurrency', 'default', '--json']);
      expect(r.json.delivery.concurrency).to.deep.equal({ limit: 20, source: 'default' });
      for (const bad of ['0', '1001', 'x']) {
        r = await cli(['limits', String(t.id), '--delivery-concurrency', bad]);
        expect(r.code, bad).to.equal(2);
      }
    });
  });

  describe('across two worker processes', () => {
    const PER_ORG = 120;
    let api: TestApi;
    let provider: Awaited<ReturnType<typeof startProvider>>;
    const workers: MainProcess[] = [];
    before(async () => {
      provider = await startProvider(40);
      api = await startApi();
    });
    after(async () => {
      await Promise.all(workers.map((w) => killHard(w.child)));
      await api.stop();
      await provider.close();
    });

    /** Queues `n` messages of the tenant (no worker runs yet). */
    async function queue(t: Tenant, n: number): Promise<void> {
      const statuses = await mapWithConcurrency(
        Array.from({ length: n }, (_, i) => i),
        20,
        async (i) =>
          (await api.request('POST', '/messages', { org: t, body: { to: `+1555300${i}`, channel: 'sms', body: `m ${i}` } })).status,
      );
      expect(statuses.filter((s) => s !== 202)).to.deep.equal([]);
    }
    /** The tenant's messages not SENT yet. */
    const pending = async (t: Tenant) =>
      Number(
        (await rows<{ n: number }>(api.deps.sharedDb, `SELECT COUNT(*) AS n FROM \`${t.dbName}\`.messages WHERE status <> 'SENT'`))[0]!.n,
      );
    /** Every message debited once: `n` debits, balance 0. */
    async function chargedOnce(t: Tenant, n: number): Promise<void> {
      const [debits] = await rows<{ n: number; messages: number }>(
        api.deps.sharedDb,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT message_id) AS messages FROM credit_ledger WHERE org_id = :id AND kind = 'debit'",
        { id: t.id },
      );
      expect({ debits: Number(debits!.n), messages: Number(debits!.messages) }).to.deep.equal({ debits: n, messages: n });
      expect(await api.deps.repo.balance(t.id)).to.equal(0);
    }

    it("A capped at 2 never has more than 2 sends at once while B uses more; both complete, each message charged once; top, the API and metrics show A's load", async () => {
      const a = await createTenant(api.deps, { credits: PER_ORG });
      const b = await createTenant(api.deps, { credits: PER_ORG });
      const set = await cli(['limits', String(a.id), '--delivery-concurrency', '2']);
      expect(set.code, set.stderr).to.equal(0);
      for (const t of [a, b]) await queue(t, PER_ORG);
      const env = { GATEWAY: 'http', GATEWAY_URL: provider.url, WORKER_CONCURRENCY: '8' };
      workers.push(...(await Promise.all([startMain(env, 'worker'), startMain(env, 'worker')])));

      // While A's backlog drains at its cap: the API, the CLI and a worker's metrics all show it.
      expect(
        await eventually(async () => {
          const d = (await api.request('GET', `/orgs/${a.id}/delivery`, { admin: true })).body.delivery;
          return d.deliveries.inFlight >= 1 && d.deliveries.parked >= 1;
        }, 30_000),
      ).to.equal(true);
      const top = await cli(['top', '--json']);
      expect(top.code, top.stderr).to.equal(0);
      const aRow = (top.json.orgs as { orgId: number; limit: number; inFlight: number }[]).find((o) => o.orgId === a.id);
      expect(aRow, JSON.stringify(top.json)).to.not.equal(undefined);
      expect(aRow!.limit).to.equal(2);
      expect(aRow!.inFlight).to.be.at.most(2);
      const metrics = String((await request(workers[0]!.url, 'GET', '/metrics', { admin: true })).body);
      expect(metrics).to.match(new RegExp(`org_jobs_(in_flight|parked)\\{queue="deliveries",org_id="${a.id}"\\}`));

      expect(await eventually(async () => (await pending(a)) + (await pending(b)) === 0, 90_000, 100)).to.equal(true);
      expect(provider.peak.get(await uidOf(api, a.id))).to.equal(2);
      expect(provider.peak.get(await uidOf(api, b.id))).to.be.greaterThan(2);
      for (const t of [a, b]) await chargedOnce(t, PER_ORG);
    });

    it('a worker SIGKILLed while holding a capped org’s slots: its leases lapse, the parked jobs wake, the backlog completes, each charged once, never above the cap', async () => {
      await Promise.all(workers.splice(0).map((w) => killHard(w.child)));
      const slow = await startProvider(300);
      try {
        const c = await createTenant(api.deps, { credits: 40 });
        expect((await api.request('PATCH', `/orgs/${c.id}`, { admin: true, body: { deliveryConcurrency: 2 } })).status).to.equal(200);
        await queue(c, 40);
        // Short locks and leases, so that the dead worker's jobs and slots come back within seconds.
        const env = { GATEWAY: 'http', GATEWAY_URL: slow.url, WORKER_CONCURRENCY: '4', WORKER_LOCK_MS: '2000', ORG_PARK_MAX_MS: '5000' };
        const [first, second] = await Promise.all([startMain(env, 'worker'), startMain(env, 'worker')]);
        workers.push(first, second);
        // Kill the first worker once it holds a slot of C (its sends are in flight at the provider).
        const holds = async () => (await api.deps.orgPermits.deliveries.load(c.id)).inFlight >= 1;
        expect(await eventually(holds, 30_000)).to.equal(true);
        await killHard(first.child);
        expect(await eventually(async () => (await pending(c)) === 0, 90_000, 200)).to.equal(true);
        await chargedOnce(c, 40);
        expect(slow.peak.get(await uidOf(api, c.id))).to.be.at.most(2);
        // The last job gives its permit back just after its message is recorded sent.
        const idle = async () => {
          const load = await api.deps.orgPermits.deliveries.load(c.id);
          return load.inFlight === 0 && load.parked === 0;
        };
        expect(await eventually(idle), JSON.stringify(await api.deps.orgPermits.deliveries.load(c.id))).to.equal(true);
      } finally {
        await slow.close();
      }
    });
  });

  describe('a slow webhook endpoint', () => {
    it("holds at most ORG_WEBHOOK_CONCURRENCY slots: another org's webhooks go out while it hangs", async () => {
      const held: http.ServerResponse[] = [];
      let released = false;
      const fast: string[] = [];
      let slowSeen = 0;
      const receiver = http.createServer((req, res) => {
        req.resume();
        if (req.url === '/slow') {
          slowSeen++;
          if (released) res.writeHead(200).end();
          else held.push(res);
        } else {
          fast.push(String(req.headers['webhook-id']));
          res.writeHead(200).end();
        }
      });
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
      const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
      const harness = await startApiWithWorkers({
        WEBHOOK_ALLOW_PRIVATE: 'true',
        WEBHOOK_CONCURRENCY: '4',
        ORG_WEBHOOK_CONCURRENCY: '1',
        WEBHOOK_TIMEOUT_MS: '30000',
      });
      try {
        const { api } = harness;
        const slow = await createTenant(api.deps, { credits: 8 });
        const quick = await createTenant(api.deps, { credits: 4 });
        for (const [t, path] of [
          [slow, '/slow'],
          [quick, '/fast'],
        ] as const) {
          expect((await api.request('PATCH', `/orgs/${t.id}`, { admin: true, body: { webhookUrl: `${base}${path}` } })).status).to.equal(
            200,
          );
        }
        for (let i = 0; i < 8; i++)
          await api.request('POST', '/messages', { org: slow, body: { to: `+1555200${i}`, channel: 'sms', body: 's' } });
        for (let i = 0; i < 4; i++)
          await api.request('POST', '/messages', { org: quick, body: { to: `+1555210${i}`, channel: 'sms', body: 'q' } });
        // Without the cap the slow endpoint's hanging requests take all 4 slots and these never arrive while it hangs.
        expect(await eventually(async () => fast.length === 4, 20_000)).to.equal(true);
        expect(slowSeen, 'slow requests in flight while the other org’s went out').to.equal(1);
        released = true;
        for (const res of held.splice(0)) res.writeHead(200).end();
        expect(await eventually(async () => slowSeen === 8, 20_000)).to.equal(true);
      } finally {
        released = true;
        for (const res of held.splice(0)) res.writeHead(200).end();
        await harness.stop();
        receiver.closeAllConnections();
        receiver.close();
      }
    });
  });
});
