/**
 * Fairness across tenants (src/platform/queue/fair-share.ts), with two real worker processes: tenant A queues a burst, tenant
 * B then sends a few messages; B's are delivered while most of A's burst is still waiting, A's burst completes, and
 * every message is charged once. No timing is asserted: what B waited for is counted in A's messages still pending.
 */
import { expect } from 'chai';
import { mapWithConcurrency } from '../../src/platform/lib/concurrency.js';
import { createTenant, eventually, rows, startApi, type TestApi } from '../helpers.js';
import { killHard, startMain, type MainProcess } from '../processes.js';

const BURST = 3000;
const QUIET = 10;

describe('fair delivery across tenants (two worker processes)', function () {
  this.timeout(180_000);
  let api: TestApi;
  const workers: MainProcess[] = [];

  before(async () => {
    api = await startApi({ RATE_LIMIT_POINTS: '1000000000' });
  });
  after(async () => {
    await Promise.all(workers.map((w) => killHard(w.child)));
    await api.stop();
  });

  it(`B's ${QUIET} messages sent after A's ${BURST} are delivered while most of A's burst still waits; then A's completes, each charged once`, async () => {
    const a = await createTenant(api.deps, { credits: BURST });
    const b = await createTenant(api.deps, { credits: QUIET });
    const pending = async (dbName: string) =>
      Number(
        (
          await rows<{ n: number }>(
            api.deps.sharedDb,
            `SELECT COUNT(*) AS n FROM \`${dbName}\`.messages WHERE status IN ('QUEUED', 'SENDING')`,
          )
        )[0]!.n,
      );
    const send = (t: { id: number; apiKey: string }, i: number, label: string) =>
      api.request('POST', '/messages', {
        org: t,
        body: { to: `+1555400${String(i).padStart(4, '0')}`, channel: 'sms', body: `${label} ${i}` },
      });

    // A's burst is queued before any worker runs: with one FIFO queue B would come after all of it.
    const accepted = await mapWithConcurrency(
      Array.from({ length: BURST }, (_, i) => i),
      20,
      async (i) => (await send(a, i, 'burst')).status,
    );
    expect(accepted.filter((s) => s !== 202)).to.deep.equal([]);
    for (let i = 0; i < QUIET; i++) expect((await send(b, i, 'quiet')).status).to.equal(202);

    workers.push(...(await Promise.all([startMain({}, 'worker'), startMain({}, 'worker')])));
    expect(await eventually(async () => (await pending(b.dbName)) === 0, 60_000, 20)).to.equal(true);
    const aWaiting = await pending(a.dbName);
    expect(aWaiting, "A's burst still pending when B's last message was delivered").to.be.greaterThan(BURST / 2);

    expect(await eventually(async () => (await pending(a.dbName)) === 0, 120_000, 200)).to.equal(true);
    for (const t of [
      { ...a, n: BURST },
      { ...b, n: QUIET },
    ]) {
      const [m] = await rows<{ sent: number; debits: number }>(
        api.deps.sharedDb,
        `SELECT (SELECT COUNT(*) FROM \`${t.dbName}\`.messages WHERE status = 'SENT') AS sent,
                (SELECT COUNT(*) FROM credit_ledger WHERE org_id = :id AND kind = 'debit') AS debits`,
        { id: t.id },
      );
      expect({ sent: Number(m!.sent), debits: Number(m!.debits) }).to.deep.equal({ sent: t.n, debits: t.n });
      expect(await api.deps.repo.balance(t.id)).to.equal(0);
    }
  });
});
