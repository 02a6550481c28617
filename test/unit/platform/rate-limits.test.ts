/** The rate limiter's rules over in-memory limiters (the Redis store is exercised by test/platform/rate-limit.test.ts). */
import { expect } from 'chai';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import type { AppError } from '../../../src/platform/lib/errors.js';
import { createRateLimits, type LimiterFactory } from '../../../src/platform/rate-limits/rate-limits.js';
import { manualClock } from '../fakes.js';

let n = 0;
/** Fresh in-memory limiters per test (their key prefixes keep tests apart). */
const memory: LimiterFactory = (prefix, { points, duration }) => new RateLimiterMemory({ keyPrefix: `${prefix}:${++n}`, points, duration });

describe('rate limits (unit)', () => {
  it('charges an org its window and refuses past it, with what is left and when it resets', async () => {
    const limits = createRateLimits({
      defaults: { points: 3, duration: 60 },
      authFailures: { points: 5, duration: 60 },
      makeLimiter: memory,
    });
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await limits.consumeOrg(1, null, 1));
    expect(answers.map((a) => [a.allowed, a.remaining])).to.deep.equal([
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ]);
    expect(answers[3]!.resetMs).to.be.within(1, 60_000);
    expect((await limits.consumeOrg(2, null, 1)).allowed, 'another org has its own window').to.equal(true);
  });

  it("uses the org's override, weighs a request by its cost, and never charges more than the whole window", async () => {
    const limits = createRateLimits({
      defaults: { points: 3, duration: 60 },
      authFailures: { points: 5, duration: 60 },
      makeLimiter: memory,
    });
    const r = await limits.consumeOrg(1, { points: 10, duration: 1 }, 4);
    expect(r).to.deep.include({ allowed: true, remaining: 6, limit: { points: 10, duration: 1 } });
    const huge = await limits.consumeOrg(3, { points: 10, duration: 1 }, 1000);
    expect(huge).to.include({ allowed: true, remaining: 0 });
  });

  it('a large limit is reserved in chunks: one store round trip per chunk, never more granted than the window', async () => {
    let calls = 0;
    const shared = new Map<string, RateLimiterMemory>();
    // Two "processes" over one shared store, counting its consumes.
    const counting: LimiterFactory = (prefix, limit) => {
      const store = shared.get(prefix) ?? shared.set(prefix, memory(prefix, limit) as RateLimiterMemory).get(prefix)!;
      return Object.assign(Object.create(store) as RateLimiterMemory, {
        consume: (key: string, points: number) => (calls++, store.consume(key, points)),
      });
    };
    const options = { defaults: { points: 200, duration: 60 }, authFailures: { points: 5, duration: 60 }, makeLimiter: counting };
    const [a, b] = [createRateLimits(options), createRateLimits(options)];
    let granted = 0;
    for (let i = 0; i < 300; i++) if ((await (i % 2 ? a : b).consumeOrg(7, null, 1)).allowed) granted++;
    // Chunks of 200 / 20 = 10: each process reserves 10 at a time until a whole chunk no longer fits.
    expect(granted)
      .to.be.at.most(200)
      .and.at.least(200 - 2 * 10);
    expect(calls, 'store consumes for 300 requests').to.be.below(300 / 2);
    const first = await createRateLimits(options).consumeOrg(8, null, 1);
    expect(first, 'remaining counts the shared window and the reserve').to.deep.include({ allowed: true, remaining: 199 });
  });

  it('spendOrg answers from the reserve without a promise, and nothing (charging nothing) when consumeOrg must decide', async () => {
    const clock = manualClock();
    const limits = createRateLimits({
      defaults: { points: 200, duration: 60 },
      authFailures: { points: 5, duration: 60 },
      makeLimiter: memory,
      now: clock.now,
    });
    expect(limits.spendOrg(1, null, 1), 'no reserve yet').to.equal(undefined);
    expect(await limits.consumeOrg(1, null, 1)).to.deep.include({ allowed: true, remaining: 199 });
    // The chunk is 200 / 20 = 10: 9 are left of it.
    const spent = Array.from({ length: 9 }, () => limits.spendOrg(1, null, 1));
    expect(spent.map((r) => r?.remaining)).to.deep.equal([198, 197, 196, 195, 194, 193, 192, 191, 190]);
    expect(limits.spendOrg(1, null, 1), 'the chunk is used up').to.equal(undefined);
    expect(await limits.consumeOrg(1, null, 1), 'the next chunk is taken by consumeOrg').to.deep.include({ allowed: true, remaining: 189 });
    expect(limits.spendOrg(1, null, 20), 'heavier than a chunk').to.equal(undefined);
    expect(limits.spendOrg(2, null, 1), "another org's window").to.equal(undefined);
    clock.advance(60_001);
    expect(limits.spendOrg(1, null, 1), 'the window reset').to.equal(undefined);
  });

  it('counts small limits exactly, one store round trip per request', async () => {
    let calls = 0;
    const counting: LimiterFactory = (prefix, limit) => {
      const store = memory(prefix, limit) as RateLimiterMemory;
      return Object.assign(Object.create(store) as RateLimiterMemory, {
        consume: (key: string, points: number) => (calls++, store.consume(key, points)),
      });
    };
    const limits = createRateLimits({
      defaults: { points: 39, duration: 60 },
      authFailures: { points: 5, duration: 60 },
      makeLimiter: counting,
    });
    for (let i = 0; i < 10; i++) await limits.consumeOrg(1, null, 1);
    expect(calls).to.equal(10);
  });

  it('refuses an address after AUTH_FAILURE_LIMIT failures (429 with Retry-After) and forgets it once the window ends', async () => {
    const clock = manualClock();
    const limits = createRateLimits({
      defaults: { points: 3, duration: 60 },
      authFailures: { points: 2, duration: 60 },
      makeLimiter: memory,
      now: clock.now,
    });
    expect(limits.checkAuthFailures('10.0.0.1'), 'an address that never failed: nothing to wait for').to.equal(undefined);
    await limits.recordAuthFailure('10.0.0.1');
    await limits.checkAuthFailures('10.0.0.1');
    await limits.recordAuthFailure('10.0.0.1');
    const err = (await limits.checkAuthFailures('10.0.0.1')?.catch((e: unknown) => e)) as AppError;
    expect(err).to.include({ status: 429, code: 'RATE_LIMITED' });
    expect(Number(err.headers!['Retry-After'])).to.be.within(1, 60);
    await limits.checkAuthFailures('10.0.0.2'); // another address is not affected
    clock.advance(60_001);
    await limits.checkAuthFailures('10.0.0.1'); // no longer a suspect of this process: not even looked up
  });
});
