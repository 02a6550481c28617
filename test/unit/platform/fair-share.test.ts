/** Fair-share priorities (src/platform/queue/fair-share.ts) with a manual clock. */
import { expect } from 'chai';
import { MAX_PRIORITY, createFairShare } from '../../../src/platform/queue/fair-share.js';

describe('fair-share priorities (unit)', () => {
  let t = 0;
  const fair = () => createFairShare({ halfLifeMs: 1000, now: () => t });
  beforeEach(() => (t = 0));

  it("a burst's jobs get growing priorities; a quiet org's next job still comes first", () => {
    const f = fair();
    const loud = Array.from({ length: 1000 }, () => f.next(1));
    expect(loud.slice(0, 3)).to.deep.equal([1, 2, 3]);
    expect(loud.at(-1)).to.equal(1000);
    expect(f.next(2)).to.equal(1);
    expect(f.next(2)).to.equal(2);
  });

  it('an org that stopped sending decays back to the front: halved every half-life', () => {
    const f = fair();
    for (let i = 0; i < 800; i++) f.next(1);
    t = 1000;
    expect(f.next(1)).to.equal(401);
    t = 11_000;
    expect(f.next(1)).to.equal(1);
  });

  it('a steady sender settles at rate × half-life / ln 2, far behind an org that sends now and then', () => {
    const f = fair();
    let p = 0;
    for (let i = 0; i < 20_000; i++) {
      t = i; // one job a millisecond: 1,000 a second
      p = f.next(1);
    }
    expect(p).to.be.within(1400, 1460); // 1000 × 1 s / ln 2 ≈ 1443
    expect(f.next(2)).to.equal(1);
  });

  it('never exceeds BullMQ’s highest priority', () => {
    const f = fair();
    let p = 0;
    for (let i = 0; i < MAX_PRIORITY + 10; i++) p = f.next(1);
    expect(p).to.equal(MAX_PRIORITY);
  });
});
