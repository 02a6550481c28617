/** withTimeout: settles as the promise does, or fails with a TimeoutError, and never keeps its timer. */
import { expect } from 'chai';
import { withTimeout } from '../../../src/platform/lib/timeout.js';

const activeTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('withTimeout (unit)', () => {
  it('answers the value, or the rejection, of a promise that settles in time, and clears its timer', async () => {
    await new Promise((r) => setImmediate(r)); // mocha's own test timer is armed by now
    const before = activeTimers();
    expect(await withTimeout(Promise.resolve(7), 60_000)).to.equal(7);
    const err = new Error('refused');
    expect(await withTimeout(Promise.reject(err), 60_000).catch((e: unknown) => e)).to.equal(err);
    await new Promise((r) => setImmediate(r));
    expect(activeTimers()).to.equal(before);
  });

  it('fails with a TimeoutError naming the operation when the promise is too slow', async () => {
    const never = new Promise<never>(() => undefined);
    const err = (await withTimeout(never, 5, 'enqueue').catch((e: unknown) => e)) as Error;
    expect(err).to.include({ name: 'TimeoutError', message: 'enqueue timed out after 5ms' });
  });
});
