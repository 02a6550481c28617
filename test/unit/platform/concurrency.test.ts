/** mapWithConcurrency: the bound, the order of results, and stopping early. */
import { expect } from 'chai';
import { mapWithConcurrency } from '../../../src/platform/lib/concurrency.js';
import { flush } from '../fakes.js';

describe('mapWithConcurrency (unit)', () => {
  it('never runs more than `concurrency` at once and returns results in input order', async () => {
    let running = 0;
    let peak = 0;
    const out = await mapWithConcurrency([5, 4, 3, 2, 1, 0], 2, async (x) => {
      running++;
      peak = Math.max(peak, running);
      for (let i = 0; i < x; i++) await flush();
      running--;
      return x * 10;
    });
    expect(peak).to.equal(2);
    expect(out).to.deep.equal([50, 40, 30, 20, 10, 0]);
  });

  it('stops starting new items once shouldStop says so; items already started finish', async () => {
    const started: number[] = [];
    const out = await mapWithConcurrency(
      [1, 2, 3, 4, 5],
      1,
      async (x) => {
        started.push(x);
        return x;
      },
      (r) => r === 2,
    );
    expect(started).to.deep.equal([1, 2]);
    expect(out).to.deep.equal([1, 2]);
  });

  it('an item that throws stops new starts and rejects the whole run', async () => {
    const started: number[] = [];
    const err = await mapWithConcurrency([1, 2, 3], 1, async (x) => {
      started.push(x);
      if (x === 2) throw new Error('boom');
      return x;
    }).catch((e: Error) => e.message);
    expect(err).to.equal('boom');
    expect(started).to.deep.equal([1, 2]);
  });

  it('handles no items and a concurrency above the item count', async () => {
    expect(await mapWithConcurrency([], 4, async (x: number) => x)).to.deep.equal([]);
    expect(await mapWithConcurrency([1], 8, async (x) => x + 1)).to.deep.equal([2]);
  });
});
