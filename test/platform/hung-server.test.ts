/**
 * A tenant server that hangs, and one connection that dies (issue 18, items 10 and 11), on a second real MariaDB
 * (scripts/local-mariadb.ts) registered through a TCP relay that can reset one connection as it switches tenants:
 * - frozen (SIGSTOP: the kernel still accepts TCP, nothing answers), its tenants' requests end in 503
 *   TENANT_DB_UNAVAILABLE with Retry-After instead of waiting on it — a statement on an idle session of the same
 *   tenant, and a COM_CHANGE_USER switching a session to another tenant — then the server counts as down: the next
 *   requests are answered from memory, the other server's tenants are served, and once thawed a probe brings it back;
 * - one ECONNRESET while switching one connection is that connection's failure: the request is served on a new one,
 *   the requests queued behind it too, and the server is not marked down;
 * - one connection that hangs right after the server's auth-switch request (the read sent with the switch's answer,
 *   server-connections.ts EarlyLend) ends in 503 too, bounded, and a probe brings the server back.
 * One second server for the whole file; it is always thawed in `after`, even when a test failed while it was frozen.
 */
import http from 'node:http';
import net from 'node:net';
import { Job } from 'bullmq';
import { expect } from 'chai';
import type { Deps } from '../../src/deps.js';
import { debitReference } from '../../src/messages/domain/deliver-message.js';
import { startWorkers, type Workers } from '../../src/messages/entry-points/queue/workers.js';
import { deliveryJobId, type DeliveryJob } from '../../src/platform/queue/queues.js';
import { startLocalMariaDb, type LocalMariaDb } from '../../scripts/local-mariadb.js';
import { RUN, eventually, rows, startApi, testConfig, testDeps, uniqueName, type TestApi } from '../helpers.js';

const COM_CHANGE_USER = 0x11;

/**
 * A TCP relay to a MySQL server that, when armed, resets (RST) the client connection sending the next COM_CHANGE_USER,
 * or lets the next COM_CHANGE_USER through with the server's auth-switch request and then hangs that connection
 * (nothing more passes either way: the server seen from the client froze right after asking for the switch's answer).
 */
async function startResettingRelay(port: number) {
  let armed: 'reset' | 'hang' | undefined;
  let resets = 0;
  let hangs = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    let hang: 'after-reply' | 'hung' | undefined;
    client.on('data', (chunk: Buffer) => {
      if (hang === 'hung') return;
      // A command packet: 3-byte length, sequence id 0, then the command byte.
      if (armed && chunk.length > 4 && chunk[3] === 0 && chunk[4] === COM_CHANGE_USER) {
        if (armed === 'hang') {
          armed = undefined;
          hang = 'after-reply';
          upstream.write(chunk);
          return;
        }
        armed = undefined;
        resets++;
        upstream.destroy();
        client.resetAndDestroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (hang === 'hung') return;
      if (hang === 'after-reply') {
        hang = 'hung';
        hangs++;
      }
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    armResetOnNextSwitch: () => (armed = 'reset'),
    armHangAfterNextAuthSwitch: () => (armed = 'hang'),
    resets: () => resets,
    hangs: () => hangs,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A provider that accepts every send (the same id for the same idempotency key); the next one can be held. */
async function startProvider() {
  let hold: { arrived(): void; release: Promise<void> } | undefined;
  const server = http.createServer((req, res) => {
    const key = String(req.headers['idempotency-key']);
    req.resume();
    const answer = () => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ id: `p-${key}` }));
    const held = hold;
    hold = undefined;
    if (!held) return answer();
    held.arrived();
    void held.release.then(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/send`,
    /** Holds the next send until `release` resolves; resolves once it has arrived. */
    holdNext: (release: Promise<void>) => new Promise<void>((arrived) => (hold = { arrived, release })),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('a hung tenant server (SIGSTOP) and one reset connection', function () {
  this.timeout(60_000);
  const SERVER = `${RUN}-hung`;
  let second: LocalMariaDb;
  let relay: Awaited<ReturnType<typeof startResettingRelay>>;
  let admin: Deps;
  let api: TestApi;
  let provider: Awaited<ReturnType<typeof startProvider>>;
  let workers: Workers | undefined;
  let env: Record<string, string>;
  let serverId: number;
  type Tenant = { id: number; apiKey: string };
  const onB: Tenant[] = [];
  let onA: Tenant;

  before(async function () {
    this.timeout(120_000);
    second = await startLocalMariaDb();
    relay = await startResettingRelay(second.port);
    admin = testDeps({}, { subscribe: false });
    serverId = (await admin.servers.add({ name: SERVER, host: '127.0.0.1', port: relay.port, user: 'root', password: '' })).id;
    for (let i = 0; i < 4; i++) {
      const { org, apiKey } = await admin.orgs.create({ name: uniqueName('hung'), credits: 100, server: SERVER });
      onB.push({ id: org.id, apiKey: apiKey! });
    }
    // On the default server by name: placement alone would pick the least-loaded server, which is B after other suites.
    const a = await admin.orgs.create({ name: uniqueName('not hung'), credits: 100, server: 'default' });
    onA = { id: a.org.id, apiKey: a.apiKey! };
    provider = await startProvider();
    // One connection per server, so that a second tenant of B is served by switching the first one's session.
    env = {
      TENANT_CONNECTIONS_MAX: '1',
      TENANT_CONNECT_TIMEOUT_MS: '500',
      TENANT_PROBE_AFTER_MS: '200',
      TENANT_RETRY_AFTER_MS: '500',
      GATEWAY: 'http',
      GATEWAY_URL: provider.url,
      DELIVERY_BACKOFF_MS: '20',
    };
    api = await startApi(env);
  });
  after(async function () {
    this.timeout(60_000);
    second?.thaw();
    await workers?.close();
    await api?.stop();
    await provider?.close();
    // Later suites create tenants too: none may land on a server about to disappear.
    await admin?.servers.setStatus(SERVER, 'draining').catch(() => undefined);
    await admin?.close();
    await relay?.close();
    await second?.destroy();
  });

  const get = (t: Tenant) => api.request('GET', '/messages', { org: t });
  const serverStats = () => api.deps.tenantDbs.serverStats().get(serverId)!;
  /** Runs fn with B frozen, thaws B whatever happens, then (fn having passed) checks that a probe brought B back for `t`. */
  async function whileFrozen(t: Tenant, fn: () => Promise<void>): Promise<void> {
    second.freeze();
    try {
      await fn();
    } finally {
      second.thaw();
    }
    expect(await eventually(async () => (await get(t)).status === 200, 20_000, 100), 'served again after the thaw').to.equal(true);
    expect(serverStats().down).to.equal(false);
  }

  it("frozen: a statement on the tenant's idle session ends in 503 TENANT_DB_UNAVAILABLE, the server is marked down, later requests are answered from memory, the other server's tenants served; thawed, it comes back", async () => {
    expect((await get(onB[0]!)).status).to.equal(200); // B's session is idle in the pool: the next request sends at once
    await whileFrozen(onB[0]!, async () => {
      const first = await get(onB[0]!);
      expect(first.status).to.equal(503);
      expect(first.body.error.code).to.equal('TENANT_DB_UNAVAILABLE');
      expect(Number(first.headers.get('retry-after'))).to.be.at.least(1);
      expect(serverStats().down, 'marked down after the first unanswered wait').to.equal(true);

      const opens = serverStats().opens;
      const next = await Promise.all([get(onB[0]!), get(onB[1]!)]);
      expect(next.map((r) => [r.status, r.body.error?.code])).to.deep.equal([
        [503, 'TENANT_DB_UNAVAILABLE'],
        [503, 'TENANT_DB_UNAVAILABLE'],
      ]);
      expect(next.every((r) => Number(r.headers.get('retry-after')) >= 1)).to.equal(true);
      expect(serverStats(), 'answered from memory: nothing opened or queued on the hung server').to.include({ opens, waiting: 0 });
      expect((await get(onA)).status, "the other server's tenant").to.equal(200);
    });
  });

  it('frozen: a COM_CHANGE_USER switching the session to another tenant is bounded too, and marks the server down', async () => {
    expect((await get(onB[0]!)).status).to.equal(200); // the one connection to B is B0's, idle
    const downs = serverStats().downs;
    await whileFrozen(onB[2]!, async () => {
      const switched = await get(onB[2]!); // B2's first request: B0's session switched to B2's user
      expect([switched.status, switched.body.error?.code]).to.deep.equal([503, 'TENANT_DB_UNAVAILABLE']);
      expect(serverStats(), 'the hung connection was given up, not left lent').to.include({ open: 0, leased: 0, downs: downs + 1 });
      expect(serverStats().switches).to.be.greaterThan(0);
      // B0 is answered from memory: not queued behind the hung connection until the budget's timeout (TENANT_CAPACITY).
      const next = await get(onB[0]!);
      expect([next.status, next.body.error?.code]).to.deep.equal([503, 'TENANT_DB_UNAVAILABLE']);
    });
  });

  it("hung right after the auth switch: the read sent with the switch's answer is bounded too (503), the connection given up; a probe brings the server back", async () => {
    const [t, other] = [onB[3]!, onB[0]!];
    await eventually(async () => (await get(t)).status === 200, 20_000, 100); // t's session checked: its next switch pipelines
    expect((await get(other)).status).to.equal(200); // the one connection to B is now other's, idle
    const pipelined = api.deps.tenantDbs.stats().switchesPipelined;
    relay.armHangAfterNextAuthSwitch();
    const hung = await get(t);
    expect([hung.status, hung.body.error?.code]).to.deep.equal([503, 'TENANT_DB_UNAVAILABLE']);
    expect(relay.hangs(), 'the connection hung after the auth switch').to.equal(1);
    expect(api.deps.tenantDbs.stats().switchesPipelined - pipelined, 'the read had left with the answer').to.equal(1);
    expect(serverStats(), 'the hung connection was given up, not left lent').to.include({ leased: 0 });
    expect(await eventually(async () => (await get(t)).status === 200, 20_000, 100), 'served again on a new connection').to.equal(true);
    expect(serverStats().down).to.equal(false);
  });

  it('one ECONNRESET while switching one connection fails neither that request nor those queued behind it, and the server is not marked down', async () => {
    expect((await get(onB[0]!)).status).to.equal(200); // B0's session idle: B3's request switches it
    const downs = serverStats().downs;
    relay.armResetOnNextSwitch();
    const answers = await Promise.all([get(onB[3]!), get(onB[0]!), get(onB[1]!), get(onB[3]!)]);
    expect(relay.resets(), 'one connection was reset while switching').to.equal(1);
    expect(answers.map((r) => r.status)).to.deep.equal([200, 200, 200, 200]);
    expect(serverStats()).to.include({ down: false, downs });
  });

  it('frozen after the provider accepted: the SENT write is bounded and the delivery postponed, not left SENDING under a renewed lock; thawed, it ends SENT, charged once', async () => {
    const t = onB[1]!;
    const sent = await api.request('POST', '/messages', { org: t, body: { to: '+15557770001', channel: 'sms', body: 'hung' } });
    expect(sent.status).to.equal(202);
    const id = sent.body.message.id as number;
    let answer!: () => void;
    const arrived = provider.holdNext(new Promise<void>((resolve) => (answer = resolve)));
    workers = startWorkers(testConfig(env), api.deps);
    await arrived; // claimed (SENDING, debited), the send in the provider's hands
    await whileFrozen(t, async () => {
      answer(); // accepted: the worker now writes SENT to a server that does not answer
      const postponed = await eventually(
        async () => ((await Job.fromId<DeliveryJob>(api.deps.deliveryQueue, deliveryJobId(t.id, id)))?.data.outages ?? 0) >= 1,
        20_000,
        20,
      );
      expect(postponed, 'the delivery was postponed while the server was frozen').to.equal(true);
    });
    const done = await eventually(
      async () => (await api.request('GET', `/messages/${id}`, { org: t })).body.message?.status === 'SENT',
      20_000,
      50,
    );
    expect(done, 'SENT once the server answers again').to.equal(true);
    const ledger = await rows<{ kind: string; amount: number; reference: string }>(
      api.deps.sharedDb,
      "SELECT kind, amount, reference FROM credit_ledger WHERE org_id = :id AND kind <> 'grant' ORDER BY id",
      { id: t.id },
    );
    expect(ledger).to.deep.equal([{ kind: 'debit', amount: -1, reference: debitReference(id) }]);
  });
});
