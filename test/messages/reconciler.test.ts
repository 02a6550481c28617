/** The outbox reconciler against real MariaDB and Redis: what a sweep enqueues again, what it leaves alone, its lock. */
import { Job, UnrecoverableError, Worker } from 'bullmq';
import { expect } from 'chai';
import type { Deps } from '../../src/deps.js';
import { createReconciler, type Reconciler } from '../../src/messages/domain/reconciler.js';
import { createLogger } from '../../src/platform/lib/logger.js';
import { DELIVERY_QUEUE, deliveryJobId, enqueueDelivery } from '../../src/platform/queue/queues.js';
import { RUN, createTenant, testDeps } from '../helpers.js';

/** Rows older than this are stale here: only the ones these tests backdate qualify, not other suites' fresh rows. */
const AFTER_MS = 30 * 60_000;

describe('outbox reconciler', function () {
  this.timeout(30_000);
  let deps: Deps;
  let reconciler: Reconciler;
  let t: { id: number; dbName: string };

  before(async () => {
    deps = testDeps({}, { subscribe: false });
    t = await createTenant(deps, { credits: 10 });
    reconciler = createReconciler({
      repo: deps.repo,
      servers: deps.servers,
      queue: deps.deliveryQueue,
      redis: deps.redis,
      prefix: RUN,
      afterMs: AFTER_MS,
      intervalMs: 60_000,
      logger: createLogger({ level: 'silent' }),
    });
  });
  after(() => deps.close());

  /** Inserts a message row in a given state, `minutesAgo` since its last change; returns its id. */
  async function row(status: string, minutesAgo: number): Promise<number> {
    const [id] = await deps.sharedDb.query(
      `INSERT INTO \`${t.dbName}\`.messages (\`to\`, channel, body, cost, status, updated_at)
       VALUES ('+15556660000', 'sms', 'r', 1, :status, CURRENT_TIMESTAMP(3) - INTERVAL :minutes MINUTE)`,
      { replacements: { status, minutes: minutesAgo } },
    );
    return Number(id);
  }
  const job = (id: number) => Job.fromId(deps.deliveryQueue, deliveryJobId(t.id, id));

  it('enqueues a stale QUEUED or SENDING row that has no job, under its own job id', async () => {
    const queued = await row('QUEUED', 120);
    const sending = await row('SENDING', 120);
    const r = await reconciler.sweep();
    expect(r).to.include({ swept: true });
    expect(r.requeued).to.be.at.least(2);
    for (const id of [queued, sending]) expect(await (await job(id))!.getState()).to.equal('waiting');
  });

  it('leaves alone a row whose job is alive, a fresh row, and final rows', async () => {
    const live = await row('QUEUED', 120);
    await enqueueDelivery(deps.deliveryQueue, { orgId: t.id, messageId: live });
    const before = (await job(live))!.timestamp;
    const fresh = await row('QUEUED', 0);
    const sent = await row('SENT', 120);
    const failed = await row('FAILED', 120);
    await reconciler.sweep();
    expect((await job(live))!.timestamp, 'the same job').to.equal(before);
    for (const id of [fresh, sent, failed]) expect(await job(id), `no job for ${id}`).to.equal(undefined);
  });

  it('replaces a failed job of a row still QUEUED (BullMQ would ignore an add with its id)', async () => {
    const id = await row('QUEUED', 120);
    await enqueueDelivery(deps.deliveryQueue, { orgId: t.id, messageId: id });
    const worker = new Worker(
      DELIVERY_QUEUE,
      () => {
        throw new UnrecoverableError('given up (as after too many postponements)');
      },
      { connection: { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null }, prefix: RUN, autorun: false },
    );
    // The queue may hold other jobs of these tests: wait for this one (the others fail too, which is harmless here).
    const failedOnce = new Promise<void>((resolve) => worker.on('failed', (j) => j?.id === deliveryJobId(t.id, id) && resolve()));
    void worker.run();
    await failedOnce;
    await worker.close();
    expect(await (await job(id))!.getState()).to.equal('failed');
    await reconciler.sweep();
    expect(await (await job(id))!.getState()).to.equal('waiting');
  });

  it('one process sweeps at a time: a sweep finds the lock held and does nothing', async () => {
    await deps.redis.set(`${RUN}:reconciler:lock`, 'another-process', 'PX', 10_000);
    try {
      const id = await row('QUEUED', 120);
      expect(await reconciler.sweep()).to.include({ swept: false, requeued: 0 });
      expect(await job(id)).to.equal(undefined);
    } finally {
      await deps.redis.del(`${RUN}:reconciler:lock`);
    }
  });

  it('a tenant whose database cannot be read does not hide the others', async () => {
    const broken = await createTenant(deps, { credits: 1 });
    const id = await row('QUEUED', 120);
    await deps.sharedDb.query(`RENAME TABLE \`${broken.dbName}\`.messages TO \`${broken.dbName}\`.messages_away`);
    try {
      const r = await reconciler.sweep();
      expect(r.failedTenants).to.be.at.least(1);
      expect(await (await job(id))!.getState()).to.equal('waiting');
    } finally {
      await deps.sharedDb.query(`RENAME TABLE \`${broken.dbName}\`.messages_away TO \`${broken.dbName}\`.messages`);
    }
  });
});
