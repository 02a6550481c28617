/**
 * The hot path's delivery adds (createDeliveryEnqueuer): the adds asked for in one turn of the event loop leave in one
 * write to Redis, and each still gets its own job, id, priority and answer. Real Redis, this run's queue prefix.
 */
import { expect } from 'chai';
import type { Redis } from 'ioredis';
import {
  createDeliveryEnqueuer,
  createDeliveryQueue,
  deliveryJobId,
  type ProducerQueue,
  type DeliveryJob,
} from '../../src/platform/queue/queues.js';
import { testConfig } from '../helpers.js';

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
  before(async () => {
    producer = createDeliveryQueue(testConfig());
    await producer.queue.waitUntilReady();
  });
  after(async () => {
    await producer.queue.obliterate({ force: true });
    await producer.close();
  });

  it('leave in one write to Redis, each as its own job with its own id and priority', async () => {
    const enqueue = createDeliveryEnqueuer(producer);
    const counts = countWrites(producer.queue.opts.connection as Redis);
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
    expect(await producer.queue.getJobCounts('prioritized')).to.deep.equal({ prioritized: 8 });
  });

  it('fails every add of the turn when Redis cannot take them, each with its own error', async () => {
    const down = createDeliveryQueue(testConfig({ REDIS_URL: 'redis://127.0.0.1:1' }));
    try {
      const enqueue = createDeliveryEnqueuer(down, 500);
      const results = await Promise.allSettled([1, 2, 3].map((messageId) => enqueue({ orgId: 900_002, messageId }, 1)));
      expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected', 'rejected']);
    } finally {
      await down.close();
    }
  });
});
