/**
 * Tenant databases over two MySQL servers: the run's usual server and a second MariaDB (`mariadbd` with its own data
 * directory and port, started by scripts/local-mariadb.ts). Placement and capacity, a connection budget per server,
 * a server going down and coming back, draining, and moving a tenant (also when the move fails part-way); the online
 * move under traffic and the ways a move must not lose data are in test/tenant-moves.test.ts.
 */
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import type { Deps } from '../../src/deps.js';
import { selectRows } from '../../src/platform/db/lean-query.js';
import { toHttpError } from '../../src/platform/http/errors.middleware.js';
import { mapWithConcurrency } from '../../src/platform/lib/concurrency.js';
import { isInfrastructureError } from '../../src/platform/lib/infrastructure-errors.js';
import type { ProvisionedOrg } from '../../src/orgs/domain/org.js';
import { startLocalMariaDb, type LocalMariaDb } from '../../scripts/local-mariadb.js';
import { RUN, cli, createTenant, eventually, rootDb, rows, startApi, testDeps, uniqueName, type TestApi } from '../helpers.js';

const SECOND = `second-${RUN}`;

describe('tenant databases on two MySQL servers', function () {
  this.timeout(120_000);
  let second: LocalMariaDb;
  let admin: Deps;
  let secondId: number;
  let root2: mysql.Connection;
  const root = rootDb();

  /** Connections MySQL sees from this run's tenant users, on the default server and on the second. */
  async function tenantSessions(): Promise<[number, number]> {
    const like = `${RUN}\\_%`;
    const [a] = await rows<{ n: number }>(root, 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER LIKE :like', { like });
    const [b] = await root2.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER LIKE ?', [
      like,
    ]);
    return [Number(a?.n ?? 0), Number(b[0]?.n ?? 0)];
  }
  /** How many databases of this name the server has (0 or 1). */
  async function databasesOn(server: 'default' | 'second', name: string): Promise<number> {
    if (server === 'default')
      return (await rows(root, 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name', { name })).length;
    const [r] = await root2.query<mysql.RowDataPacket[]>('SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [
      name,
    ]);
    return r.length;
  }

  before(async () => {
    second = await startLocalMariaDb();
    root2 = await mysql.createConnection({ host: second.host, port: second.port, user: 'root' });
    admin = testDeps({}, { subscribe: false });
    secondId = (await admin.servers.add({ name: SECOND, host: second.host, port: second.port, user: 'root', password: '', capacity: 5 }))
      .id;
  });
  after(async () => {
    // Later suites create tenants too: none of them may land on a server that is about to disappear.
    await admin.servers.setStatus(SECOND, 'draining');
    await admin.servers.setStatus('default', 'active');
    await admin.close();
    await root2.end().catch(() => undefined);
    await root.close();
    await second.destroy();
  });

  describe('placement', () => {
    let api: TestApi;
    before(async () => (api = await startApi()));
    after(async () => api.stop());

    it('with the default server drained (CLI), 8 concurrent POST /orgs fill the second server to its capacity of 5, never past it; the rest get 409 NO_SERVER_CAPACITY', async () => {
      const drained = await cli(['servers', 'drain', 'default', '--json']);
      expect(drained.code, drained.stderr).to.equal(0);
      expect(drained.json.server).to.include({ name: 'default', status: 'draining' });
      try {
        const answers = await Promise.all(
          Array.from({ length: 8 }, () => api.request('POST', '/orgs', { admin: true, body: { name: uniqueName('placed') } })),
        );
        expect(answers.map((a) => a.status).sort()).to.deep.equal([201, 201, 201, 201, 201, 409, 409, 409]);
        expect(answers.filter((a) => a.status === 409).map((a) => a.body.error.code)).to.deep.equal(Array(3).fill('NO_SERVER_CAPACITY'));
        const placed = await admin.servers.get(secondId);
        expect(placed.tenants).to.equal(5);
        for (const a of answers.filter((x) => x.status === 201)) {
          expect((await admin.repo.get(a.body.org.id as number))?.dbServerId).to.equal(secondId);
          expect(
            (await api.request('GET', '/messages', { org: { id: a.body.org.id as number, apiKey: a.body.apiKey as string } })).status,
          ).to.equal(200);
        }
      } finally {
        const activated = await cli(['servers', 'activate', 'default']);
        expect(activated.code, activated.stderr).to.equal(0);
      }
      // Full: a new tenant goes to the default server even when it is the busier one.
      const next = await createTenant(admin);
      expect((await admin.repo.get(next.id))?.dbServerId).not.to.equal(secondId);
    });
  });

  describe('with 100 tenants on each server and TENANT_CONNECTIONS_MAX=5', () => {
    let api: TestApi;
    const tenants: { id: number; apiKey: string; server: string }[] = [];
    before(async function () {
      this.timeout(300_000);
      await admin.sharedDb.query('UPDATE db_servers SET capacity = 10000 WHERE id = :id', { replacements: { id: secondId } });
      const specs = Array.from({ length: 200 }, (_, i) => (i % 2 ? SECOND : 'default'));
      tenants.push(
        ...(await mapWithConcurrency(specs, 4, async (server) => {
          const { org, apiKey } = await admin.orgs.create({ name: uniqueName('fleet'), credits: 10, server });
          return { id: org.id, apiKey: apiKey!, server };
        })),
      );
      api = await startApi({ TENANT_CONNECTIONS_MAX: '5', TENANT_POOL_MAX: '2', TENANT_RETRY_AFTER_MS: '500' });
    });
    after(async () => api.stop());

    it('serves 1,000 concurrent requests over all 200 and holds at most 5 connections on each server (PROCESSLIST of both)', async () => {
      let sampling = true;
      const peak = [0, 0];
      const sampler = (async () => {
        while (sampling) {
          const [a, b] = await tenantSessions();
          peak[0] = Math.max(peak[0]!, a);
          peak[1] = Math.max(peak[1]!, b);
        }
      })();
      const statuses = await Promise.all(
        Array.from({ length: 1000 }, (_, i) =>
          api.request('GET', '/messages?limit=1', { org: tenants[(i * 7) % 200]! }).then((r) => r.status),
        ),
      );
      sampling = false;
      await sampler;
      expect(statuses.filter((s) => s !== 200)).to.deep.equal([]);
      expect(peak[0], 'peak on the default server').to.be.within(1, 5);
      expect(peak[1], 'peak on the second server').to.be.within(1, 5);
      expect([...api.deps.tenantDbs.serverStats().keys()]).to.include(secondId);
    });

    it('a statement cut off by its server dying fails as a connection error (503 upstream, postponed by workers), not a bug', async () => {
      const t = tenants.find((x) => x.server === SECOND)!;
      const org = (await api.deps.repo.get(t.id))!;
      const running = api.deps.tenantDbs
        .withTenant(org as ProvisionedOrg, (db) => selectRows(db, 'SELECT SLEEP(5) AS slept', []))
        .catch((e: unknown) => e);
      await eventually(async () => api.deps.tenantDbs.stats().connectionsInUse > 0);
      await second.kill();
      const err = await running;
      await second.start();
      root2 = await mysql.createConnection({ host: second.host, port: second.port, user: 'root' });
      // The socket's close (a connection error), or, where the server was found down first (its probe refused while
      // the event loop was busy), the server's own 503 TENANT_DB_UNAVAILABLE: never an error that reads as a bug.
      const asCode = (err as { code?: unknown }).code;
      expect(
        (err as Error).name === 'SequelizeConnectionError' || asCode === 'TENANT_DB_UNAVAILABLE',
        `${(err as Error).name} ${String(asCode)}`,
      ).to.equal(true);
      expect(isInfrastructureError(err)).to.equal(true);
      expect(toHttpError(err)).to.include({ status: 503 });
    });

    it('the second server killed: its tenants answer 503 TENANT_DB_UNAVAILABLE with Retry-After, the others 200; started again, they recover without a restart', async () => {
      const onSecond = tenants.filter((t) => t.server === SECOND).slice(0, 10);
      const onDefault = tenants.filter((t) => t.server === 'default').slice(0, 10);
      await second.kill();
      try {
        const down = await Promise.all(onSecond.map((t) => api.request('GET', '/messages', { org: t })));
        const up = await Promise.all(onDefault.map((t) => api.request('GET', '/messages', { org: t })));
        expect(down.map((r) => r.status)).to.deep.equal(Array(10).fill(503));
        expect(new Set(down.map((r) => r.body.error.code))).to.deep.equal(new Set(['TENANT_DB_UNAVAILABLE']));
        expect(down.every((r) => Number(r.headers.get('retry-after')) >= 1)).to.equal(true);
        expect(up.map((r) => r.status)).to.deep.equal(Array(10).fill(200));
      } finally {
        await second.start();
        root2 = await mysql.createConnection({ host: second.host, port: second.port, user: 'root' });
      }
      const recovered = await eventually(
        async () => (await Promise.all(onSecond.map((t) => api.request('GET', '/messages', { org: t })))).every((r) => r.status === 200),
        10_000,
        200,
      );
      expect(recovered).to.equal(true);
    });
  });

  describe('moving a tenant', () => {
    let api: TestApi;
    before(async () => (api = await startApi()));
    after(async () => api.stop());

    /** A tenant on the default server (placement alone would now pick the emptier second one) with n messages. */
    async function tenantWithMessages(n: number) {
      const { org: created, apiKey } = await admin.orgs.create({ name: uniqueName('mover'), credits: 100, server: 'default' });
      const t = { id: created.id, apiKey: apiKey! };
      for (let i = 0; i < n; i++) {
        const r = await api.request('POST', '/messages', { org: t, body: { to: '+15551230000', channel: 'sms', body: `m${i}` } });
        expect(r.status).to.equal(202);
      }
      const org = (await admin.repo.get(t.id))!;
      return { ...t, dbName: org.dbName!, serverId: org.dbServerId! };
    }

    it('bin/tenant move <id> --to <server>: copies, verifies, switches, drops the old copy; the API then serves the same messages from the new server', async () => {
      const t = await tenantWithMessages(25);
      const before = (await api.request('GET', '/messages?limit=100', { org: t })).body as Array<{ id: number; body: string }>;
      const moved = await cli(['move', String(t.id), '--to', SECOND, '--json'], { ORG_CACHE_TTL_MS: '300' });
      expect(moved.code, moved.stderr).to.equal(0);
      expect(moved.json).to.deep.include({ orgId: t.id, from: 'default', to: SECOND, changesApplied: 0, oldCopyDropped: true });
      expect(moved.json.rows).to.deep.equal({ messages: 25 });
      expect((await admin.repo.get(t.id))?.dbServerId).to.equal(secondId);
      expect(await databasesOn('default', t.dbName)).to.equal(0);
      expect(await databasesOn('second', t.dbName)).to.equal(1);
      expect(await eventually(async () => (await api.request('GET', '/messages?limit=100', { org: t })).status === 200)).to.equal(true);
      const after = await api.request('GET', '/messages?limit=100', { org: t });
      expect(after.body, 'the same messages, read from the new server').to.deep.equal(before);
      const sent = await api.request('POST', '/messages', { org: t, body: { to: '+15551230000', channel: 'sms', body: 'after the move' } });
      expect(sent.status).to.equal(202);
      expect(sent.body.message.id).to.equal(before[0]!.id + 1);
    });

    it('while the copy runs the tenant keeps answering reads (200) and writes (202); a message sent meanwhile is on the new server', async () => {
      const [t, other] = [await tenantWithMessages(3), await tenantWithMessages(0)];
      let resume!: () => void;
      let paused!: () => void;
      const atCopy = new Promise<void>((r) => (paused = r));
      const deps = testDeps(
        { ORG_CACHE_TTL_MS: '300' },
        { subscribe: false, beforeMoveStep: (step) => (step === 'COPY' ? (paused(), new Promise<void>((r) => (resume = r))) : undefined) },
      );
      try {
        const move = deps.mover.move(t.id, SECOND);
        await atCopy;
        expect((await api.request('GET', '/messages', { org: t })).status).to.equal(200);
        const sent = await api.request('POST', '/messages', {
          org: t,
          body: { to: '+15551230000', channel: 'sms', body: 'during the move' },
        });
        expect(sent.status).to.equal(202);
        expect((await api.request('GET', '/messages', { org: other })).status).to.equal(200);
        resume();
        const r = await move;
        expect(r.rows).to.deep.equal({ messages: 4 });
        const after = await eventually(async () => {
          const list = await api.request('GET', '/messages', { org: t });
          return list.status === 200 && (list.body as { body: string }[]).some((m) => m.body === 'during the move');
        });
        expect(after).to.equal(true);
        expect((await admin.repo.get(t.id))?.dbServerId).to.equal(secondId);
      } finally {
        await deps.close();
      }
    });

    it('a move that fails part-way (at VERIFY) leaves the tenant on its old server, working, with nothing left on the new one', async () => {
      const t = await tenantWithMessages(5);
      const deps = testDeps(
        {},
        {
          subscribe: false,
          beforeMoveStep: (step) => {
            if (step === 'VERIFY') throw new Error('injected failure before VERIFY');
          },
        },
      );
      try {
        const err = await deps.mover.move(t.id, SECOND).catch((e: Error) => e);
        expect((err as Error).message).to.match(/injected failure/);
      } finally {
        await deps.close();
      }
      const org = (await admin.repo.get(t.id))!;
      expect(org.dbServerId).to.equal(t.serverId);
      expect(org.movingSince).to.equal(null);
      expect(await databasesOn('second', t.dbName)).to.equal(0);
      expect(await databasesOn('default', t.dbName)).to.equal(1);
      const ok = await eventually(async () => {
        const r = await api.request('GET', '/messages', { org: t });
        return r.status === 200 && (r.body as unknown[]).length === 5;
      });
      expect(ok, 'served from the old server again (its account unlocked)').to.equal(true);
      expect(
        (await api.request('POST', '/messages', { org: t, body: { to: '+15551230000', channel: 'sms', body: 'still here' } })).status,
      ).to.equal(202);
    });

    it('a move to a server that is down fails, and the tenant keeps working where it was', async () => {
      const t = await tenantWithMessages(2);
      await second.kill();
      try {
        const moved = await cli(['move', String(t.id), '--to', SECOND]);
        expect(moved.code).to.equal(1);
        expect(moved.stderr).to.match(/\S/);
      } finally {
        await second.start();
        root2 = await mysql.createConnection({ host: second.host, port: second.port, user: 'root' });
      }
      expect((await admin.repo.get(t.id))?.dbServerId).to.equal(t.serverId);
      expect(await eventually(async () => (await api.request('GET', '/messages', { org: t })).status === 200)).to.equal(true);
    });
  });
});
