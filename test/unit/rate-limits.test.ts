/** The rate limiter's rules over in-memory limiters (the Redis store is exercised by test/rate-limit.test.ts). */
import { expect } from 'chai';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import type { AppError } from '../../src/lib/errors.js';
import { createRateLimits, type LimiterFactory } from '../../src/rate-limits/rate-limits.js';
import { manualClock } from './fakes.js';

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

  it('refuses an address after AUTH_FAILURE_LIMIT failures (429 with Retry-After) and forgets it once the window ends', async () => {
    const clock = manualClock();
    const limits = createRateLimits({
      defaults: { points: 3, duration: 60 },
      authFailures: { points: 2, duration: 60 },
      makeLimiter: memory,
      now: clock.now,
    });
    await limits.checkAuthFailures('10.0.0.1');
    await limits.recordAuthFailure('10.0.0.1');
    await limits.checkAuthFailures('10.0.0.1');
    await limits.recordAuthFailure('10.0.0.1');
    const err = (await limits.checkAuthFailures('10.0.0.1').catch((e: unknown) => e)) as AppError;
    expect(err).to.include({ status: 429, code: 'RATE_LIMITED' });
    expect(Number(err.headers!['Retry-After'])).to.be.within(1, 60);
    await limits.checkAuthFailures('10.0.0.2'); // another address is not affected
    clock.advance(60_001);
    await limits.checkAuthFailures('10.0.0.1'); // no longer a suspect of this process: not even looked up
  });
});
