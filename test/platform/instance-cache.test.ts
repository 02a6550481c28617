import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { Sequelize } from 'sequelize';
import type { Deps } from '../../src/deps.js';
import { RUN, createTenant, eventually, provisionedOrg, rootDb, rows, startApi, testDeps, type TestApi } from '../helpers.js';

/** Connections MySQL itself sees from this run's tenant users. */
async function tenantConnections(root: Sequelize): Promise<number> {
  const [r] = await rows<{ n: number }>(root, 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER LIKE :like', {
    like: `${RUN}\\_%`,
  });
  return Number(r?.n ?? 0);
}

describe('tenant pool cache', () => {
  let admin: Deps;
  let root: Sequelize;
  before(() => {
    admin = testDeps({}, { subscribe: false });
    root = rootDb();
  });
  after(async () => {
    await admin.close();
    await root.close();
  });

  describe('with 60 tenants, TENANT_CACHE_MAX=10, TENANT_CONNECTIONS_MAX=6 and TENANT_POOL_MAX=2', () => {
    let api: TestApi;
    const tenants: { id: number; apiKey: string }[] = [];
    before(async function () {
      this.timeout(120_000);
      for (let i = 0; i < 60; i++) tenants.push(await createTenant(admin));
      api = await startApi({ TENANT_CACHE_MAX: '10', TENANT_CONNECTIONS_MAX: '6', TENANT_POOL_MAX: '2', DB_POOL_MAX: '4' });
    });
    after(async () => api.stop());

    it('serves 1,200 concurrent requests across all of them and never holds more than 6 tenant connections', async function () {
      this.timeout(120_000);
      let sampling = true;
      let peak = 0;
      let samples = 0;
      const sampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, await tenantConnections(root));
          samples++;
        }
      })();
      const statuses = await Promise.all(
        Array.from({ length: 1200 }, (_, i) => {
          const t = tenants[(i * 7) % tenants.length]!; // fixed interleaving: every tenant, out of order
          return api.request('GET', i % 2 ? '/messages?limit=5' : `/messages/${i + 1}`, { org: t }).then((r) => r.status);
        }),
      );
      sampling = false;
      await sampler;
      expect(
        statuses.filter((s) => s !== 200 && s !== 404),
        'non-2xx other than MESSAGE_NOT_FOUND',
      ).to.deep.equal([]);
      expect(statuses.filter((s) => s === 200)).to.have.length(600);
      expect(samples).to.be.greaterThan(5);
      expect(peak, 'peak tenant connections seen by MySQL').to.be.within(1, 6);
      const stats = api.deps.tenantDbs.stats();
      expect(stats.open + stats.closing).to.be.at.most(10);
      expect(stats.evictions, 'the LRU really had to evict').to.be.greaterThan(0);
      expect(stats.leased).to.equal(0);
    });
  });

  describe('its rules', () => {
    it('shares one initialisation between concurrent first requests for a tenant', async () => {
      const deps = testDeps({}, { subscribe: false });
      try {
        const t = await createTenant(admin);
        const org = await provisionedOrg(deps, t.id);
        const results = await Promise.all(Array.from({ length: 25 }, () => deps.tenantDbs.withTenant(org, async (db) => db)));
        expect(new Set(results).size).to.equal(1);
        expect(deps.tenantDbs.stats()).to.include({ misses: 1, hits: 24, open: 1 });
      } finally {
        await deps.close();
      }
    });

    it('never evicts a pool while a query runs on it: the next tenant waits for the lease', async () => {
      const deps = testDeps({ TENANT_CACHE_MAX: '1' }, { subscribe: false });
      try {
        const [a, b] = [await createTenant(admin), await createTenant(admin)];
        const [orgA, orgB] = [await provisionedOrg(deps, a.id), await provisionedOrg(deps, b.id)];
        const events: string[] = [];
        let releaseA!: () => void;
        const holdA = new Promise<void>((r) => (releaseA = r));
        const runA = deps.tenantDbs.withTenant(orgA, async (db) => {
          events.push('A started');
          await holdA;
          const [[row]] = (await db.sequelize.query('SELECT 1 AS one')) as [Array<{ one: number }>, unknown];
          events.push('A queried');
          return row?.one;
        });
        await eventually(async () => events.includes('A started'));
        const runB = deps.tenantDbs.withTenant(orgB, async () => void events.push('B started'));
        await new Promise((r) => setImmediate(r));
        expect(events).to.deep.equal(['A started']); // B is waiting for A's slot
        releaseA();
        expect(await runA).to.equal(1);
        await runB;
        expect(events).to.deep.equal(['A started', 'A queried', 'B started']);
        expect(deps.tenantDbs.stats()).to.include({ open: 1, evictions: 1 });
      } finally {
        await deps.close();
      }
    });

    it('never loses a slot when a pool is evicted while its first connection is still failing, and close() still ends', async () => {
      const silent = net.createServer((sock) => sock.on('error', () => undefined)); // accepts, never answers
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const deps = testDeps({ TENANT_CACHE_MAX: '2', TENANT_CONNECT_TIMEOUT_MS: '200', TENANT_RETRY_AFTER_MS: '0' }, { subscribe: false });
      try {
        const server = await admin.servers.add({
          name: `silent-${RUN}`,
          host: '127.0.0.1',
          port: (silent.address() as AddressInfo).port,
          user: 'root',
          password: '',
        });
        await admin.sharedDb.query("UPDATE db_servers SET status = 'draining' WHERE id = :id", { replacements: { id: server.id } });
        const ok = await createTenant(admin);
        for (let i = 0; i < 3; i++) {
          const down = await createTenant(admin);
          await admin.sharedDb.query('UPDATE orgs SET db_server_id = :server WHERE id = :id', {
            replacements: { server: server.id, id: down.id },
          });
          const pending = deps.tenantDbs
            .withTenant(await provisionedOrg(deps, down.id), async () => 'never')
            .catch((e: { code?: string }) => e.code);
          deps.tenantDbs.evict(down.id); // while the connection attempt is still pending
          expect(await pending).to.equal('TENANT_DB_UNAVAILABLE');
        }
        expect(await eventually(async () => deps.tenantDbs.stats().closing === 0)).to.equal(true);
        expect(await deps.tenantDbs.withTenant(await provisionedOrg(deps, ok.id), async () => 'served')).to.equal('served');
      } finally {
        await deps.close(); // must end: no slot is left counted as closing
        silent.close();
      }
    });

    it('answers 503 TENANT_CAPACITY when every slot stays leased past the acquire timeout', async () => {
      const deps = testDeps({ TENANT_CACHE_MAX: '1', TENANT_ACQUIRE_TIMEOUT_MS: '200' }, { subscribe: false });
      try {
        const [a, b] = [await createTenant(admin), await createTenant(admin)];
        let release!: () => void;
        const held = deps.tenantDbs.withTenant(await provisionedOrg(deps, a.id), () => new Promise<void>((r) => (release = r)));
        await eventually(async () => deps.tenantDbs.stats().leased === 1);
        const err = await deps.tenantDbs.withTenant(await provisionedOrg(deps, b.id), async () => 'no').catch((e: unknown) => e);
        expect(err).to.include({ status: 503, code: 'TENANT_CAPACITY' });
        release();
        await held;
      } finally {
        await deps.close();
      }
    });

    it("after TENANT_IDLE_MS MySQL sees an idle tenant's connections go, while its instance (no connection of its own) stays: the next request is no miss", async () => {
      const deps = testDeps({ TENANT_IDLE_MS: '200' }, { subscribe: false });
      try {
        const t = await createTenant(admin);
        const org = await provisionedOrg(deps, t.id);
        await deps.tenantDbs.withTenant(org, (db) => db.sequelize.query('SELECT 1'));
        expect(deps.tenantDbs.stats()).to.include({ open: 1, misses: 1 });
        const user = org.dbUser;
        expect(
          await eventually(
            async () =>
              Number(
                (
                  await rows<{ n: number }>(root, 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = :user', { user })
                )[0]?.n,
              ) === 0,
          ),
        ).to.equal(true);
        expect(deps.tenantDbs.stats()).to.include({ open: 1, evictions: 0 });
        await deps.tenantDbs.withTenant(org, (db) => db.sequelize.query('SELECT 1'));
        expect(deps.tenantDbs.stats()).to.include({ open: 1, misses: 1, hits: 1 });
      } finally {
        await deps.close();
      }
    });
  });

  describe('a tenant whose database server does not answer', () => {
    let blackhole: net.Server;
    const sockets = new Set<net.Socket>();
    let api: TestApi;
    before(async () => {
      // Accepts TCP connections and never says a word: the MySQL handshake can only time out.
      blackhole = net.createServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
      });
      await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
      api = await startApi({ TENANT_CONNECT_TIMEOUT_MS: '300', TENANT_RETRY_AFTER_MS: '60000' });
    });
    after(async () => {
      await api.stop();
      sockets.forEach((s) => s.destroy());
      blackhole.close();
    });

    it('answers 503 TENANT_DB_UNAVAILABLE with Retry-After for that tenant only', async () => {
      const [down, up] = [await createTenant(admin), await createTenant(admin)];
      const server = await admin.servers.add({
        name: `blackhole-${RUN}`,
        host: '127.0.0.1',
        port: (blackhole.address() as AddressInfo).port,
        user: 'root',
        password: '',
      });
      // Draining at once, so no tenant created by another test is placed on it.
      await admin.sharedDb.query("UPDATE db_servers SET status = 'draining' WHERE id = :id", { replacements: { id: server.id } });
      await admin.sharedDb.query('UPDATE orgs SET db_server_id = :server WHERE id = :id', {
        replacements: { server: server.id, id: down.id },
      });
      await api.deps.events.publish({ orgId: down.id, reason: 'moved' });

      const [downRes, ...upRes] = await Promise.all([
        api.request('GET', '/messages', { org: down }),
        ...Array.from({ length: 10 }, () => api.request('GET', '/messages', { org: up })),
      ]);
      expect(downRes.status).to.equal(503);
      expect(downRes.body.error.code).to.equal('TENANT_DB_UNAVAILABLE');
      expect(Number(downRes.headers.get('retry-after'))).to.be.greaterThan(0);
      expect(JSON.stringify(downRes.body)).not.to.match(/127\.0\.0\.1|ETIMEDOUT|connect/);
      expect(upRes.map((r) => r.status)).to.deep.equal(Array(10).fill(200));
      // Within the retry window the answer comes from memory, without another connection attempt.
      const failuresBefore = api.deps.tenantDbs.stats().failures;
      expect((await api.request('GET', '/messages', { org: down })).status).to.equal(503);
      expect(api.deps.tenantDbs.stats().failures).to.equal(failuresBefore);
      // GET /org needs only the shared DB, so it still works.
      expect((await api.request('GET', '/org', { org: down })).status).to.equal(200);
    });
  });
});
