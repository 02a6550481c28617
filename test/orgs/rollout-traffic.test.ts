/**
 * Migrating while serving (expand/contract): API and worker traffic against a fleet while bin/tenant rolls the next
 * tenant migration out gets no error from it; a tenant created during the rollout is created at the latest version;
 * a tenant moved to another MySQL server during the rollout keeps its version (the record follows the org).
 */
import { expect } from 'chai';
import type { Sequelize } from 'sequelize';
import { startLocalMariaDb, type LocalMariaDb } from '../../scripts/local-mariadb.js';
import type { Deps } from '../../src/deps.js';
import { NEXT_MIGRATION, nextMigrationsDir } from '../fixtures/next-migrations.js';
import { RUN, cli, rootDb, rows, startApiWithWorkers, testDeps, uniqueName, type ApiWithWorkers } from '../helpers.js';
import { expectExit, makeFleet, startCli, tenantEvents, type Fleet } from './rollout-helpers.js';

describe('fleet rollouts while serving', function () {
  this.timeout(180_000);
  let next: Awaited<ReturnType<typeof nextMigrationsDir>>;
  let root: Sequelize;
  before(async () => {
    next = await nextMigrationsDir();
    root = rootDb();
  });
  after(async () => {
    await root?.close();
    await next?.remove();
  });

  describe('API and worker traffic during a rollout', () => {
    let f: Fleet;
    let harness: ApiWithWorkers;
    before(async () => {
      f = await makeFleet('trf', 4, next.dir, 100_000);
      // The new code is deployed first (it has the next migration and works with or without its column), then rolled out.
      harness = await startApiWithWorkers(f.env);
    });
    after(async () => {
      await harness?.stop();
      await f?.deps.close();
    });

    it('every request during the rollout succeeds (202 / 200), every message is delivered, a tenant created meanwhile is at the latest version, and doctor is clean', async () => {
      const api = harness.api;
      const statuses: number[] = [];
      const sent: { orgId: number; id: number }[] = [];
      let serving = true;
      const traffic = f.tenants.map(async (t, n) => {
        const org = { id: t.id, apiKey: t.apiKey };
        for (let i = 0; serving; i++) {
          const post = await api.request('POST', '/messages', {
            org,
            body: { to: `+1555000${1000 + n}`, channel: 'sms', body: `during ${i}` },
          });
          statuses.push(post.status);
          if (post.status === 202) sent.push({ orgId: t.id, id: post.body.message.id as number });
          const list = await api.request('GET', '/messages?limit=5', { org });
          statuses.push(list.status);
        }
      });

      const run = startCli(['migrate', '--canary', '1', '--concurrency', '1', '--json'], { ...f.env, TEST_MIGRATION_SLOW_MS: '300' });
      await run.waitFor((e) => e.event === 'tenant');
      const created = await api.request('POST', '/orgs', { admin: true, body: { name: uniqueName('during rollout'), credits: 10 } });
      expect(created.status, JSON.stringify(created.body)).to.equal(201);
      const ended = await run.ended;
      serving = false;
      await Promise.all(traffic);
      expect(ended.code, ended.stderr).to.equal(0);

      const counts = statuses.reduce<Record<number, number>>((m, s) => ({ ...m, [s]: (m[s] ?? 0) + 1 }), {});
      expect(Object.keys(counts).map(Number).sort(), JSON.stringify(counts)).to.deep.equal([200, 202]);
      expect(sent.length, 'messages accepted during the rollout').to.be.above(4);
      for (const m of sent) await harness.delivered(m.orgId, m.id);
      for (const t of f.tenants) {
        const mine = sent.filter((m) => m.orgId === t.id).map((m) => m.id);
        const states = await rows<{ status: string }>(root, `SELECT status FROM \`${t.dbName}\`.messages WHERE id IN (:ids)`, {
          ids: mine,
        });
        expect(states.map((s) => s.status)).to.deep.equal(mine.map(() => 'SENT'));
      }

      const s = await cli(['status', '--json'], f.env);
      expect(s.json, 'the new tenant included').to.deep.include({ latest: NEXT_MIGRATION, versions: { [NEXT_MIGRATION]: 5 }, pending: 0 });
      const d = await cli(['doctor', '--json'], f.env);
      expectExit(d, 0);
      expect(d.json).to.deep.include({ checked: 5, drifted: [] });
    });
  });

  describe('a tenant moved to another server during a rollout', () => {
    let second: LocalMariaDb;
    let f: Fleet;
    let mover: Deps;
    const SECOND = `second-${RUN}-ro`;
    before(async () => {
      second = await startLocalMariaDb();
      f = await makeFleet('mov', 4, next.dir);
      await f.deps.servers.add({ name: SECOND, host: second.host, port: second.port, user: 'root', password: '' });
      // The process that moves the tenant runs the new code too (its copy is made with the next migration).
      mover = testDeps(f.env, { subscribe: false });
    });
    after(async () => {
      await mover?.close();
      await f?.deps.close();
      await second?.destroy();
    });

    it('keeps its version: the rollout migrates it where it is now, the record follows the org to its new server, doctor is clean there', async () => {
      const moved = f.tenants[3]!;
      const run = startCli(['migrate', '--canary', '1', '--concurrency', '1', '--json'], { ...f.env, TEST_MIGRATION_SLOW_MS: '1000' });
      await run.waitFor((e) => e.event === 'tenant');
      const r = await mover.mover.move(moved.id, SECOND);
      expect(r.to).to.equal(SECOND);
      const ended = await run.ended;
      expect(ended.code, ended.stderr).to.equal(0);
      const last = tenantEvents(ended).find((e) => e.orgId === moved.id);
      expect(last, 'the moved tenant was migrated (or found up to date) on its new server').to.include({ result: 'ok' });

      const org = await f.deps.repo.get(moved.id);
      const [record] = await rows<{ version: string }>(
        f.deps.sharedDb,
        'SELECT version FROM tenant_schema_versions WHERE db_server_id = :server AND db_name = :db',
        { server: org!.dbServerId, db: moved.dbName },
      );
      expect(record?.version).to.equal(NEXT_MIGRATION);
      const s = await cli(['status', '--json'], f.env);
      expect(s.json).to.deep.include({ versions: { [NEXT_MIGRATION]: 4 }, pending: 0 });
      const d = await cli(['doctor', '--json'], f.env);
      expectExit(d, 0);
      expect(d.json.drifted).to.deep.equal([]);
    });
  });
});
