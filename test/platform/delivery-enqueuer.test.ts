/**
 * The hot path's delivery adds (createDeliveryEnqueuer): the adds asked for in one turn of the event loop leave in one
 * write to Redis, and each still gets its own job, id, priority and answer. Real Redis: this run's queue prefix, and a
 * throwaway redis-server for the outage.
 */
import type { ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { freePort } from '../../scripts/free-port.js';
import {
  createDeliveryEnqueuer,
  createDeliveryQueue,
  deliveryJobId,
  type DeliveryJob,
  type ProducerQueue,
} from '../../src/platform/queue/queues.js';
import { tracing } from '../../src/platform/telemetry/tracing.js';
import { RUN, testConfig } from '../helpers.js';
import { killHard, startRedis } from '../processes.js';

/** Counts the socket writes of a connection (Node's net.Socket: one `_write` or `_writev` per write to the kernel). */
function countWrites(client: Redis): { writes: number; chunks: number } {
  const counts = { writes: 0, chunks: 0 };
  const stream = client.stream as unknown as {
    _write(chunk: unknown, encoding: string, cb: () => void): void;
    _writev(chunks: unknown[], cb: () => void): void;
  };
  const write = stream._write.bind(stream);
  const writev = stream._writev.bind(stream);
  stream._write = (chunk, encoding, cb) => {
    counts.writes++;
    counts.chunks++;
    write(chunk, encoding, cb);
  };
  stream._writev = (chunks, cb) => {
    counts.writes++;
    counts.chunks += chunks.length;
    writev(chunks, cb);
  };
  return counts;
}

describe('delivery adds of one turn', () => {
  let producer: ProducerQueue<DeliveryJob>;
  let counts: { writes: number; chunks: number };
  // A queue of its own (this run's prefix, removed with the run): the other suites' delivery jobs are not counted.
  const config = testConfig({ QUEUE_PREFIX: `${RUN}enq` });
  before(async () => {
    producer = createDeliveryQueue(config);
    await producer.queue.waitUntilReady();
    // One add first: the queue's own start-up writes and the script's first load are behind it when counting starts.
    await createDeliveryEnqueuer(producer)({ orgId: 900_000, messageId: 1 }, 1);
    counts = countWrites(producer.queue.opts.connection as Redis);
  });
  beforeEach(() => Object.assign(counts, { writes: 0, chunks: 0 }));
  after(async () => {
    await producer.queue.obliterate({ force: true });
    await producer.close();
  });

  it('leave in one write to Redis, each as its own job with its own id and priority', async () => {
    const enqueue = createDeliveryEnqueuer(producer);
    const jobs = Array.from({ length: 8 }, (_, i) => ({ orgId: 900_001, messageId: 100 + i }));
    await Promise.all(jobs.map((job, i) => enqueue(job, i + 1)));
    expect(counts).to.deep.equal({ writes: 1, chunks: 8 });
    for (const [i, job] of jobs.entries()) {
      const added = await producer.queue.getJob(deliveryJobId(job.orgId, job.messageId));
      expect(added?.data).to.deep.equal(job);
      expect(added?.opts.priority).to.equal(i + 1);
    }
    // A message enqueued again (a retried request) is still one job: its id is derived from the message.
    await Promise.all([enqueue(jobs[0]!, 1), enqueue(jobs[0]!, 1)]);
    expect(await producer.queue.getJobCounts('prioritized')).to.deep.equal({ prioritized: 9 });
  });

  it('are sent one by one, each at once, while tracing is on (each job carries its own request trace)', async () => {
    const enqueue = createDeliveryEnqueuer(producer);
    tracing.enabled = true;
    try {
      await Promise.all([1, 2, 3].map((messageId) => enqueue({ orgId: 900_003, messageId }, 1)));
    } finally {
      tracing.enabled = false;
    }
    expect(counts).to.deep.equal({ writes: 3, chunks: 3 });
  });

  describe('when Redis is lost after the queue was ready', () => {
    let redis: ChildProcess;
    let lost: ProducerQueue<DeliveryJob>;
    before(async () => {
      const port = await freePort();
      redis = await startRedis(port);
      lost = createDeliveryQueue({ ...config, redisUrl: `redis://127.0.0.1:${port}` });
      await lost.queue.waitUntilReady();
    });
    after(async () => {
      await lost.close();
      await killHard(redis);
    });

    it('fails every add of the turn at once, each with its own error (refused, not timed out)', async () => {
      const connection = lost.queue.opts.connection as Redis;
      const closed = new Promise((resolve) => connection.once('close', resolve));
      await killHard(redis);
      await closed;
      const enqueue = createDeliveryEnqueuer(lost, 10_000);
      const results = await Promise.allSettled([1, 2, 3].map((messageId) => enqueue({ orgId: 900_002, messageId }, 1)));
      expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected', 'rejected']);
      const errors = results.map((r) => (r as PromiseRejectedResult).reason as Error);
      expect(new Set(errors).size).to.equal(3);
      for (const err of errors) expect(err).to.be.instanceOf(Error).and.not.have.property('name', 'TimeoutError');
    });
  });
});
