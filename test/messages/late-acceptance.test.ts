/**
 * Overlapping runs with an idempotent provider (issue 18, item 7), with real worker processes and a real HTTP provider:
 * run A sends, its worker is frozen (SIGSTOP) past its lock, run B (another process) claims attempt 2 and resends with
 * the same idempotency key while A's request is still in the provider's hands. The invariant: every message the
 * provider accepted ends SENT and charged exactly once, whatever B was answered.
 *
 * - The provider answers B 409 "a request with this key is in progress" (as Stripe and others do): that is not a
 *   rejection of the message; B postpones, and the message ends SENT once A's request is accepted.
 * - The provider answers B 503 on its last attempt: B marks the message FAILED and refunds it; A's acceptance then
 *   arrives and turns it SENT, charged again under its own ledger reference.
 */
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { debitReference, lateDebitReference, refundReference } from '../../src/messages/domain/deliver-message.js';
import { createTenant, eventually, rows, startApi, type TestApi } from '../helpers.js';
import { killHard, startMain, type MainProcess } from '../processes.js';

/**
 * An idempotent provider. The first request of a key can be held until released; while it is held, another request
 * with the same key answers `whileInFlight` (409 or 503); once accepted, every request with the key answers the same id.
 */
async function startProvider() {
  const accepted = new Map<string, string>();
  const inFlight = new Set<string>();
  const events = new EventEmitter();
  let holdFirst = false;
  let whileInFlight = 409;
  let release: (() => void) | undefined;
  const server = http.createServer((req, res) => {
    const key = String(req.headers['idempotency-key']);
    req.resume();
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
      events.emit('answered', { key, status });
    };
    if (accepted.has(key)) return json(200, { id: accepted.get(key) });
    if (inFlight.has(key)) {
      return whileInFlight === 409
        ? json(409, { error: { type: 'idempotency_error', message: 'a request with this idempotency key is in progress' } })
        : json(whileInFlight, { error: 'temporarily unavailable' });
    }
    inFlight.add(key);
    const accept = () => {
      inFlight.delete(key);
      accepted.set(key, `p-${key}`);
      json(200, { id: `p-${key}` });
    };
    if (!holdFirst) return accept();
    holdFirst = false;
    release = accept;
    events.emit('held', key);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/send`,
    accepted,
    events,
    /** Holds the next new key's request; `other` is what a second request with that key is answered meanwhile. */
    holdNext(other: number) {
      holdFirst = true;
      whileInFlight = other;
    },
    /** Accepts the held request: the answer goes out to its (possibly frozen) sender. */
    releaseHeld: () => release?.(),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('late acceptances with an idempotent provider: every accepted message ends SENT, charged once (real processes)', function () {
  this.timeout(120_000);
  let provider: Awaited<ReturnType<typeof startProvider>>;
  let api: TestApi;
  const children: MainProcess[] = [];

  before(async () => {
    provider = await startProvider();
  });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => killHard(c.child)));
    await api?.stop();
  });
  after(() => provider.close());

  /** The test's API (no workers: the test's processes deliver); a job's attempts and backoff are the API's. */
  async function apiWith(attempts: number): Promise<void> {
    api = await startApi({ DELIVERY_ATTEMPTS: String(attempts), DELIVERY_BACKOFF_MS: '20' });
  }

  /** Short locks (a frozen run is taken over within about two seconds), a provider that may take a while. */
  const workerEnv = (attempts: number) => ({
    GATEWAY: 'http',
    GATEWAY_URL: provider.url,
    GATEWAY_TIMEOUT_MS: '60000',
    WORKER_LOCK_MS: '1000',
    DELIVERY_ATTEMPTS: String(attempts),
    DELIVERY_BACKOFF_MS: '20',
  });
  const worker = async (env: Record<string, string>) => {
    const w = await startMain(env, 'worker');
    children.push(w);
    return w;
  };

  /** The invariant: accepted by the provider ⇔ SENT, charged exactly its cost; otherwise FAILED with nothing charged. */
  async function expectAcceptedChargedOnce(t: { id: number; dbName: string }, granted: number): Promise<void> {
    const uid = (await api.deps.repo.get(t.id))!.uid;
    const messages = await rows<{ id: number; status: string; cost: number; provider_message_id: string | null }>(
      api.deps.sharedDb,
      `SELECT id, status, cost, provider_message_id FROM \`${t.dbName}\`.messages`,
    );
    const ledger = await rows<{ amount: number; message_id: number | null; reference: string }>(
      api.deps.sharedDb,
      'SELECT amount, message_id, reference FROM credit_ledger WHERE org_id = :id',
      { id: t.id },
    );
    for (const m of messages) {
      const id = Number(m.id);
      const net = ledger.filter((l) => Number(l.message_id) === id).reduce((s, l) => s + Number(l.amount), 0);
      const providerId = provider.accepted.get(`${uid}-${id}`);
      if (providerId)
        expect({ id, status: m.status, providerId: m.provider_message_id, net }).to.deep.equal({
          id,
          status: 'SENT',
          providerId,
          net: -m.cost,
        });
      else expect({ id, status: m.status, net }).to.deep.equal({ id, status: 'FAILED', net: 0 });
    }
    const sentCost = messages.filter((m) => m.status === 'SENT').reduce((s, m) => s + Number(m.cost), 0);
    const balance = await api.deps.repo.balance(t.id);
    expect(balance, 'balance = ledger sum').to.equal(ledger.reduce((s, l) => s + Number(l.amount), 0));
    expect(balance, 'balance = granted − cost of SENT').to.equal(granted - sentCost);
  }

  /**
   * A's worker sends and is frozen with the request in the provider's hands; B's worker takes the job over and resends;
   * once B has been answered `other` (and `settled` holds, when given), the provider accepts A's request and A's worker
   * goes on.
   */
  async function overlap(
    t: { id: number; apiKey: string; dbName: string },
    other: number,
    attempts: number,
    settled?: (id: number) => Promise<boolean>,
  ): Promise<{ id: number; a: MainProcess }> {
    provider.holdNext(other);
    const held = once(provider.events, 'held');
    const res = await api.request('POST', '/messages', { org: t, body: { to: '+15558880001', channel: 'sms', body: 'overlap' } });
    expect(res.status).to.equal(202);
    const a = await worker(workerEnv(attempts));
    const [key] = (await held) as [string];
    a.child.kill('SIGSTOP');
    const bAnswered = new Promise<void>((resolve) => {
      const on = (e: { key: string; status: number }) => {
        if (e.key === key && e.status === other) {
          provider.events.off('answered', on);
          resolve();
        }
      };
      provider.events.on('answered', on);
    });
    await worker(workerEnv(attempts)); // B: its stalled-job check hands it the frozen run's job
    await bAnswered;
    const id = res.body.message.id as number;
    // B's answer is on the wire, not yet acted on: what the test describes happens only once B has acted.
    if (settled) expect(await eventually(() => settled(id), 15_000, 20), 'B acted on its answer').to.equal(true);
    provider.releaseHeld();
    a.child.kill('SIGCONT');
    return { id, a };
  }

  it('B answered 409 "key in progress" postpones (not a rejection): the message ends SENT with A’s provider id, charged once, never refunded', async () => {
    await apiWith(3);
    const t = await createTenant(api.deps, { credits: 5 });
    const { id, a } = await overlap(t, 409, 3);
    await a.lines.waitFor('delivery run superseded');
    const status = async () =>
      (await rows<{ status: string }>(api.deps.sharedDb, `SELECT status FROM \`${t.dbName}\`.messages WHERE id = :id`, { id }))[0]!.status;
    expect(await eventually(async () => (await status()) !== 'SENDING' && (await status()) !== 'QUEUED', 30_000, 50)).to.equal(true);
    await expectAcceptedChargedOnce(t, 5);
    const refs = (
      await rows<{ reference: string }>(api.deps.sharedDb, "SELECT reference FROM credit_ledger WHERE org_id = :id AND kind <> 'grant'", {
        id: t.id,
      })
    ).map((r) => r.reference);
    expect(refs).to.deep.equal([debitReference(id)]);
  });

  it('B failed on its last attempt and refunded, then A’s acceptance arrives: the message ends SENT, charged again under its own reference', async () => {
    await apiWith(1);
    const t = await createTenant(api.deps, { credits: 5 });
    const status = async (id: number) =>
      (await rows<{ status: string }>(api.deps.sharedDb, `SELECT status FROM \`${t.dbName}\`.messages WHERE id = :id`, { id }))[0]!.status;
    const refunded = async (id: number) =>
      (await status(id)) === 'FAILED' &&
      (
        await rows(api.deps.sharedDb, 'SELECT 1 FROM credit_ledger WHERE org_id = :org AND reference = :ref', {
          org: t.id,
          ref: refundReference(id),
        })
      ).length === 1;
    const { id, a } = await overlap(t, 503, 1, refunded);
    await a.lines.waitFor('delivery run superseded');
    expect(await eventually(async () => (await status(id)) === 'SENT', 15_000, 50), 'the accepted message ends SENT').to.equal(true);
    await expectAcceptedChargedOnce(t, 5);
    const refs = (
      await rows<{ reference: string }>(
        api.deps.sharedDb,
        "SELECT reference FROM credit_ledger WHERE org_id = :id AND kind <> 'grant' ORDER BY id",
        { id: t.id },
      )
    ).map((r) => r.reference);
    expect(refs).to.deep.equal([debitReference(id), refundReference(id), lateDebitReference(id)]);
  });
});
