/**
 * The reconciler repairs FAILED messages whose settlement was cut off (issue 18, item 8), against the real MariaDB,
 * Redis and a delivery worker: a refund lost for good (the job that would have repeated it is gone) is applied exactly
 * once; a late acceptance cut off by a crash (the provider's id on a FAILED row) ends SENT, charged once. The states
 * are made with a seam (rows and ledger entries written as a crash at that point leaves them), with no job left.
 */
import { Job } from 'bullmq';
import { expect } from 'chai';
import type { Deps } from '../../src/deps.js';
import { debitReference, lateDebitReference, refundReference } from '../../src/messages/domain/deliver-message.js';
import { createReconciler, type Reconciler } from '../../src/messages/domain/reconciler.js';
import { createLogger } from '../../src/platform/lib/logger.js';
import { deliveryJobId } from '../../src/platform/queue/queues.js';
import { startWorkers, type Workers } from '../../src/messages/entry-points/queue/workers.js';
import { RUN, createTenant, eventually, rows, testConfig, testDeps } from '../helpers.js';

/** Rows are stale past 10 minutes here; repairs look back a day. */
const AFTER_MS = 10 * 60_000;
const LOOKBACK_MS = 24 * 60 * 60_000;
/** The built-in reconciler of the workers stays out of the way: the test sweeps with its own. */
const ENV = { RECONCILE_INTERVAL_MS: String(60 * 60_000) };

describe('reconciler repairs of FAILED messages (refunds lost for good, late acceptances cut off)', function () {
  this.timeout(60_000);
  let deps: Deps;
  let workers: Workers;
  let reconciler: Reconciler;
  let t: { id: number; dbName: string };

  before(async () => {
    deps = testDeps(ENV, { subscribe: false });
    workers = startWorkers(testConfig(ENV), deps);
    reconciler = createReconciler({
      repo: deps.repo,
      servers: deps.servers,
      queue: deps.deliveryQueue,
      redis: deps.redis,
      ledger: deps.ledger,
      prefix: `${RUN}-repairs`,
      afterMs: AFTER_MS,
      intervalMs: 60_000,
      lookbackMs: LOOKBACK_MS,
      logger: createLogger({ level: 'silent' }),
    });
    t = await createTenant(deps, { credits: 10 });
  });
  after(async () => {
    await workers.close();
    await deps.close();
  });

  /** A FAILED row last changed `minutesAgo`, as the run that failed it left it (provider id only if accepted). */
  async function failedRow(minutesAgo: number, cost: number, providerMessageId: string | null = null, tenant = t): Promise<number> {
    const [id] = await deps.sharedDb.query(
      `INSERT INTO \`${tenant.dbName}\`.messages (\`to\`, channel, body, cost, status, attempts, error_code, provider_message_id, updated_at)
       VALUES ('+15556661111', 'sms', 'r', :cost, 'FAILED', 1, 'PROVIDER_HTTP_400', :providerMessageId,
               CURRENT_TIMESTAMP(3) - INTERVAL :minutes MINUTE)`,
      { replacements: { cost, providerMessageId, minutes: minutesAgo } },
    );
    return Number(id);
  }
  const apply = (kind: 'debit' | 'refund', id: number, amount: number) =>
    deps.ledger.apply({
      orgId: t.id,
      kind,
      amount,
      reference: kind === 'debit' ? debitReference(id) : refundReference(id),
      messageId: id,
    });
  const entries = async (id: number) =>
    (
      await rows<{ reference: string; amount: number }>(
        deps.sharedDb,
        'SELECT reference, amount FROM credit_ledger WHERE org_id = :org AND message_id = :id ORDER BY id',
        { org: t.id, id },
      )
    ).map((r) => [r.reference, Number(r.amount)]);
  const job = (id: number) => Job.fromId(deps.deliveryQueue, deliveryJobId(t.id, id));
  const finished = async (id: number) =>
    eventually(async () => ['completed', 'failed'].includes((await (await job(id))?.getState()) ?? ''), 20_000, 20);
  const status = async (id: number) =>
    (await rows<{ status: string }>(deps.sharedDb, `SELECT status FROM \`${t.dbName}\`.messages WHERE id = :id`, { id }))[0]!.status;

  it('a FAILED message charged and never refunded (its job gone) is refunded exactly once; settled or uncharged ones are left alone', async () => {
    const balance = await deps.repo.balance(t.id);
    const lost = await failedRow(AFTER_MS / 60_000 + 1, 2);
    await apply('debit', lost, -2);
    const settled = await failedRow(AFTER_MS / 60_000 + 1, 1);
    await apply('debit', settled, -1);
    await apply('refund', settled, 1);
    const uncharged = await failedRow(AFTER_MS / 60_000 + 1, 1); // e.g. INSUFFICIENT_CREDITS: never debited
    expect(await deps.repo.balance(t.id)).to.equal(balance - 2);

    const r = await reconciler.sweep();
    expect(r.repairs).to.be.at.least(1);
    expect(await job(settled), 'nothing to repair').to.equal(undefined);
    expect(await job(uncharged), 'nothing to repair').to.equal(undefined);
    expect(await finished(lost)).to.equal(true);
    expect(await entries(lost)).to.deep.equal([
      [debitReference(lost), -2],
      [refundReference(lost), 2],
    ]);
    expect(await status(lost)).to.equal('FAILED');
    expect(await deps.repo.balance(t.id)).to.equal(balance);

    // The next sweep reads the row again (its window overlaps) and finds it settled: its finished job stays as it is.
    const before = (await job(lost))!.timestamp;
    await reconciler.sweep();
    expect((await job(lost))!.timestamp).to.equal(before);
    expect((await entries(lost)).filter(([ref]) => ref === refundReference(lost))).to.have.length(1);
    expect(await deps.repo.balance(t.id)).to.equal(balance);
    expect(await deps.ledger.sum(t.id)).to.equal(balance);
  });

  it('a FAILED row with the provider’s id (a late acceptance a crash cut off after the refund) ends SENT, charged exactly once', async () => {
    const balance = await deps.repo.balance(t.id);
    const id = await failedRow(AFTER_MS / 60_000 + 2, 1, 'p-accepted-late');
    await apply('debit', id, -1);
    await apply('refund', id, 1);
    const r = await reconciler.sweep();
    expect(r.repairs).to.be.at.least(1);
    expect(await finished(id)).to.equal(true);
    expect(await status(id)).to.equal('SENT');
    expect(await entries(id)).to.deep.equal([
      [debitReference(id), -1],
      [refundReference(id), 1],
      [lateDebitReference(id), -1],
    ]);
    expect(await deps.repo.balance(t.id)).to.equal(balance - 1);
    expect(await deps.ledger.sum(t.id)).to.equal(balance - 1);
  });

  it('reads a FAILED row in the sweeps around its change, not in every sweep: the next one starts at the last clean one, less an overlap', async () => {
    // A tenant of its own, and a reconciler that sees only it: the other suites' rows (and their repairs) stay out.
    const own = await createTenant(deps, { credits: 1 });
    const fresh = createReconciler({
      repo: { list: async (q) => (await deps.repo.list(q)).filter((o) => o.id === own.id) },
      servers: deps.servers,
      queue: deps.deliveryQueue,
      redis: deps.redis,
      ledger: deps.ledger,
      prefix: `${RUN}-mark`,
      afterMs: AFTER_MS,
      intervalMs: 60_000,
      lookbackMs: LOOKBACK_MS,
      logger: createLogger({ level: 'silent' }),
    });
    await failedRow((3 * AFTER_MS) / 60_000, 1, null, own); // changed before the next sweep's window (cut-off − overlap)
    await failedRow(AFTER_MS / 60_000 + 1, 1, null, own); // changed within it
    const first = await fresh.sweep();
    expect(Number(await deps.redis.get(`${RUN}-mark:reconciler:failed-checked-until`))).to.be.closeTo(Date.now() - AFTER_MS, 60_000);
    const second = await fresh.sweep();
    expect([first.tenants, first.failedChecked, first.repairs]).to.deep.equal([1, 2, 0]);
    expect(second.failedChecked, 'the older row is not read again').to.equal(1);
  });

  it('looks back no further than RECONCILE_REPAIR_LOOKBACK_MS (bounded work per sweep)', async () => {
    const old = await failedRow(LOOKBACK_MS / 60_000 + 60, 1);
    await apply('debit', old, -1);
    await reconciler.sweep();
    expect(await job(old)).to.equal(undefined);
  });
});
