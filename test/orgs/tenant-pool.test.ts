/**
 * The warm pool (issue 21): tenants provisioned ahead, claimed by creates (HTTP and CLI), invisible until claimed,
 * never given twice (two API processes creating at once), migrated like any tenant, and a refill killed mid-way
 * (SIGKILL) leaves nothing that no org owns. A shared DB, tenant prefix and Redis prefix of its own: its pooled
 * tenants are nobody else's business.
 */
import { expect } from 'chai';
import type { Sequelize } from 'sequelize';
import { createTenantPool } from '../../src/orgs/domain/tenant-pool.js';
import { nextMigrationsDir } from '../fixtures/next-migrations.js';
import { RUN, cli, eventually, request, rootDb, rows, startApi, testDeps, uniqueName, type TestApi } from '../helpers.js';
import { exited, killHard, startMain, type MainProcess } from '../processes.js';

const OWN = { DB_NAME: `${RUN}_pool_shared`, TENANT_DB_PREFIX: `${RUN}_pool_`, QUEUE_PREFIX: `${RUN}_pool` };
const SHARED = OWN.DB_NAME;

describe('the warm pool of tenants', function () {
  this.timeout(180_000);
  let root: Sequelize;
  before(() => (root = rootDb()));
  after(async () => root.close());

  const orgRows = async () =>
    rows<{
      id: number;
      name: string;
      uid: string;
      status: string;
      db_name: string;
      db_user: string;
      pooled_since: Date | null;
      last_error: string | null;
    }>(root, `SELECT id, name, uid, status, db_name, db_user, pooled_since, last_error FROM \`${SHARED}\`.orgs ORDER BY id`);
  const pooledIds = async () => (await orgRows()).filter((o) => o.status === 'POOLED').map((o) => o.id);
  /** Every database of the prefix with the uid of the org its marker names, and every MySQL user of the prefix. */
  async function onServer() {
    const dbs = await rows<{ name: string }>(
      root,
      'SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :like AND SCHEMA_NAME <> :shared',
      {
        like: `${OWN.TENANT_DB_PREFIX.replace(/_/g, '\\_')}%`,
        shared: SHARED,
      },
    );
    const marks = new Map<string, string | null>();
    for (const { name } of dbs) {
      const marked = await rows<{ org_uid: string }>(root, `SELECT org_uid FROM \`${name}\`.tenancy_owner`).catch(() => []);
      marks.set(name, marked[0]?.org_uid ?? null);
    }
    const users = (
      await rows<{ User: string }>(root, 'SELECT User FROM mysql.user WHERE User LIKE :like', { like: `${OWN.TENANT_DB_PREFIX}%` })
    ).map((u) => u.User);
    return { marks, users };
  }

  describe('claimed by creates (HTTP and CLI)', () => {
    let api: TestApi;
    const env = { ...OWN, TENANT_WARM_POOL_SIZE: '3' };
    before(async () => {
      const filled = await cli(['pool', 'fill', '--json'], env);
      expect(filled.code, filled.stderr).to.equal(0);
      expect(filled.json.made).to.equal(3);
      api = await startApi(env); // its pool is not started: what it holds is what the test made
    });
    after(async () => api?.stop());

    it('`pool fill` makes TENANT_WARM_POOL_SIZE tenants per active server, shown by `pool`, `servers list` and /metrics, counted by fleet status, and invisible to the admin API', async () => {
      const pooled = await pooledIds();
      expect(pooled).to.have.length(3);
      const state = await cli(['pool', '--json'], env);
      expect(state.json).to.deep.equal({ size: 3, servers: [{ server: 'default', ready: 3, making: 0, failed: 0 }] });
      const servers = await cli(['servers', 'list', '--json'], env);
      expect(
        servers.json.servers.map((s: { name: string; pooled: number; tenants: number }) => [s.name, s.pooled, s.tenants]),
      ).to.deep.equal([['default', 3, 3]]);
      const status = await cli(['status', '--json'], env);
      expect(status.code, status.stderr).to.equal(0);
      expect(status.stdout, 'fleet migrations keep pooled tenants at the latest version').to.match(/"tenants":3\b/);
      const metrics = await api.request('GET', '/metrics', { admin: true });
      expect(metrics.body).to.include('tenant_warm_pool{server="default",state="ready"} 3');
      // A pooled tenant is nobody's org: not listed, not found, and its database already carries its own marker.
      const list = await api.request('GET', '/orgs?limit=100', { admin: true });
      expect(list.status).to.equal(200);
      expect(list.body.orgs).to.deep.equal([]);
      const one = await api.request('GET', `/orgs/${pooled[0]}`, { admin: true });
      expect([one.status, one.body.error.code]).to.deep.equal([404, 'ORG_NOT_FOUND']);
      const { marks } = await onServer();
      for (const o of (await orgRows()).filter((r) => r.status === 'POOLED')) expect(marks.get(o.db_name)).to.equal(o.uid);
    });

    it('a refill of a full pool (every tick of a quiet process) makes nothing and opens no connection of its own for a lock', async () => {
      const connections = async () =>
        Number(
          (
            await rows<{ n: string }>(
              root,
              "SELECT VARIABLE_VALUE AS n FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'CONNECTIONS'",
            )
          )[0]!.n,
        );
      const before = await connections();
      for (let i = 0; i < 5; i++) expect(await api.deps.pool.refill()).to.equal(0);
      // Each round used to open a connection for its GET_LOCK; now it asks the shared pool first (a stray connection of
      // the pool itself, or of anything else on the server, may still count).
      expect((await connections()) - before).to.be.below(3);
      expect(await pooledIds()).to.have.length(3);
    });

    it('POST /orgs and `bin/tenant create` claim pooled tenants (oldest first) that work at once; a taken name claims nothing; an empty pool provisions inline', async () => {
      const pooled = await pooledIds();
      const name = uniqueName('claimed');
      const created = await api.request('POST', '/orgs', { admin: true, body: { name, credits: 50 } });
      expect(created.status, JSON.stringify(created.body)).to.equal(201);
      expect(created.body.org.id).to.equal(pooled[0]);
      expect([created.body.org.name, created.body.org.status, created.body.org.creditBalance]).to.deep.equal([name, 'ACTIVE', 50]);
      const org = { id: created.body.org.id as number, apiKey: created.body.apiKey as string };
      const sent = await api.request('POST', '/messages', { org, body: { to: '+15551230000', channel: 'sms', body: 'first' } });
      expect(sent.status, JSON.stringify(sent.body)).to.equal(202);

      const taken = await api.request('POST', '/orgs', { admin: true, body: { name, credits: 1 } });
      expect([taken.status, taken.body.error.code]).to.deep.equal([409, 'ORG_NAME_TAKEN']);
      expect(await pooledIds(), 'the refused create left the pool as it was').to.deep.equal(pooled.slice(1));

      const byCli = await cli(['create', uniqueName('cli'), '--credits', '5', '--json'], env);
      expect(byCli.code, byCli.stderr).to.equal(0);
      expect(byCli.json.org.id).to.equal(pooled[1]);
      const third = await api.request('POST', '/orgs', { admin: true, body: { name: uniqueName('third'), credits: 1 } });
      expect(third.body.org.id).to.equal(pooled[2]);
      // The pool is empty now: the next create provisions its tenant inline, and works all the same.
      const inline = await api.request('POST', '/orgs', { admin: true, body: { name: uniqueName('inline'), credits: 1 } });
      expect(inline.status, JSON.stringify(inline.body)).to.equal(201);
      expect(pooled).to.not.include(inline.body.org.id);
      const mine = await api.request('GET', '/org', { org: { id: inline.body.org.id as number, apiKey: inline.body.apiKey as string } });
      expect(mine.status).to.equal(200);
      const unknown = await api.request('POST', '/orgs', { admin: true, body: { name: uniqueName('x'), credits: 1, server: 'nowhere' } });
      expect([unknown.status, unknown.body.error.code]).to.deep.equal([404, 'SERVER_NOT_FOUND']);
    });

    it('`pool fill` with the pool off is a usage error (exit 2); `pool what` too', async () => {
      const off = await cli(['pool', 'fill'], { ...OWN, TENANT_WARM_POOL_SIZE: '0' });
      expect(off.code).to.equal(2);
      expect(off.stderr).to.include('TENANT_WARM_POOL_SIZE=0');
      const bad = await cli(['pool', 'what'], env);
      expect(bad.code).to.equal(2);
    });
  });

  describe('two API processes', () => {
    let a: MainProcess;
    let b: MainProcess;
    const env = { ...OWN, TENANT_WARM_POOL_SIZE: '50', TENANT_WARM_POOL_REFILL_MS: '200' };
    before(async () => {
      [a, b] = await Promise.all([startMain(env, 'api'), startMain(env, 'api')]);
    });
    after(async () => {
      // Stopped as a deploy stops them (SIGTERM): a refill ends the tenant it is making.
      await Promise.all(
        [a, b].filter(Boolean).map(async (p) => {
          const gone = exited(p.child);
          p.child.kill('SIGTERM');
          await gone;
        }),
      );
    });

    it('creating 200 tenants at once (100 through each, 5 at a time) while both refill: every create 201, no pooled tenant given twice, every key its own org’s', async () => {
      await eventually(async () => (await pooledIds()).length >= 50, 120_000, 200);
      const before = new Set((await orgRows()).map((o) => o.id));
      const created: { id: number; name: string; apiKey: string; via: string }[] = [];
      const statuses: number[] = [];
      await Promise.all(
        [a, b].flatMap((p, n) =>
          Array.from({ length: 5 }, async (_, lane) => {
            for (let i = 0; i < 20; i++) {
              const name = uniqueName(`twice-${n}-${lane}`);
              const r = await request(p.url, 'POST', '/orgs', { admin: true, body: { name, credits: 3 } });
              statuses.push(r.status);
              if (r.status === 201) created.push({ id: r.body.org.id, name, apiKey: r.body.apiKey, via: p.url });
            }
          }),
        ),
      );
      expect([...new Set(statuses)]).to.deep.equal([201]);
      const ids = created.map((c) => c.id);
      expect(new Set(ids).size, 'distinct orgs').to.equal(200);
      const claimed = ids.filter((id) => before.has(id));
      expect(claimed.length, `creates that claimed a tenant pooled before they began (${claimed.length})`).to.equal(50);
      const byId = new Map((await orgRows()).map((o) => [o.id, o]));
      const { marks } = await onServer();
      for (const c of created) {
        const o = byId.get(c.id)!;
        expect([o.name, o.status, o.pooled_since], `org ${c.id}`).to.deep.equal([c.name, 'ACTIVE', null]);
        expect(marks.get(o.db_name), `org ${c.id}'s database is its own`).to.equal(o.uid);
      }
      const keys = await rows<{ org_id: number; n: number }>(
        root,
        `SELECT org_id, COUNT(*) AS n FROM \`${SHARED}\`.api_keys GROUP BY org_id`,
      );
      const keyCount = new Map(keys.map((k) => [Number(k.org_id), Number(k.n)]));
      for (const c of created) expect(keyCount.get(c.id), `keys of org ${c.id}`).to.equal(1);
      for (const c of created.filter((_, i) => i % 20 === 0)) {
        const me = await request(c.via, 'GET', '/org', { org: { id: c.id, apiKey: c.apiKey } });
        expect([me.status, me.body.org.name]).to.deep.equal([200, c.name]);
      }
    });
  });

  describe('a refill killed mid-way', () => {
    let next: Awaited<ReturnType<typeof nextMigrationsDir>>;
    before(async () => (next = await nextMigrationsDir()));
    after(async () => next?.remove());

    it('SIGKILL while a pooled tenant is being migrated: the next refill discards what cannot be finished (a migration applied but not recorded) and tops the pool up; every database and MySQL user of the prefix belongs to an org', async () => {
      const env = {
        ...OWN,
        TENANT_WARM_POOL_SIZE: String((await pooledIds()).length + 1),
        TENANT_MIGRATIONS_DIR: next.dir,
        TEST_MIGRATION_SLOW_MS: '600000',
      };
      const known = new Set((await orgRows()).map((o) => o.id));
      let victim!: Awaited<ReturnType<typeof orgRows>>[number];
      const main = await startMain(env, 'api');
      try {
        const stuck = await eventually(
          async () => (await orgRows()).some((o) => !known.has(o.id) && o.status === 'PROVISIONING' && o.pooled_since !== null),
          60_000,
          50,
        );
        expect(stuck).to.equal(true);
        victim = (await orgRows()).find((o) => !known.has(o.id))!;
        // Held inside the next migration (after its DDL, before Umzug records it): the refill is mid-way.
        const held = await eventually(
          async () =>
            (
              await rows(root, 'SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db AND COLUMN_NAME = :col', {
                db: victim.db_name,
                col: 'archived_at',
              })
            ).length > 0,
          60_000,
          50,
        );
        expect(held).to.equal(true);
      } finally {
        await killHard(main.child);
      }

      const deps = testDeps({ ...env, TEST_MIGRATION_SLOW_MS: '0' }, { subscribe: false });
      try {
        const pool = createTenantPool({ ...deps, stalledSec: 0 });
        await pool.refill();
        // The victim's migration ran its DDL but was not recorded: it cannot be resumed, so it is gone, row and all.
        const now = await orgRows();
        expect(
          now.find((o) => o.id === victim.id),
          'the victim discarded',
        ).to.equal(undefined);
        const { marks, users } = await onServer();
        expect([marks.has(victim.db_name), users.includes(victim.db_user)]).to.deep.equal([false, false]);
        const fresh = now.filter((o) => !known.has(o.id));
        expect(fresh.map((o) => [o.status, o.last_error])).to.deep.equal([['POOLED', null]]);
        const applied = await rows<{ name: string }>(root, `SELECT name FROM \`${fresh[0]!.db_name}\`.schema_migrations ORDER BY name`);
        expect(applied.at(-1)?.name).to.match(/^20991201-0001/);
      } finally {
        await deps.close();
      }
      const all = await orgRows();
      const { marks, users } = await onServer();
      const owned = new Map(all.filter((o) => o.status !== 'DELETED').map((o) => [o.db_name, o]));
      for (const [db, uid] of marks) expect(owned.get(db)?.uid, `database ${db} belongs to an org`).to.equal(uid);
      const ownedUsers = new Set([...owned.values()].map((o) => o.db_user));
      expect(
        users.filter((u) => !ownedUsers.has(u)),
        'MySQL users that no org owns',
      ).to.deep.equal([]);
    });
  });
});
