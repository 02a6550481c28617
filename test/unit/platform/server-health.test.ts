/**
 * When a tenant server counts as down (src/platform/tenant-connections/server-health.ts), with a probe the test answers
 * by hand: one suspicion is a probe, not an outage; a failed probe or a timeout is; a down server is probed until one
 * probe succeeds. test/platform/hung-server.test.ts proves the effects on a real frozen MariaDB.
 */
import { expect } from 'chai';
import { createServerHealth } from '../../../src/platform/tenant-connections/server-health.js';
import { deferred } from '../fakes.js';

type Deferred = ReturnType<typeof deferred<void>>;

function health(retryAfterMs = 5) {
  const probes: Deferred[] = [];
  const events: string[] = [];
  const waiting: Array<() => void> = [];
  let up = deferred();
  const h = createServerHealth({
    retryAfterMs,
    probe() {
      const d = deferred();
      probes.push(d);
      for (const w of waiting.splice(0)) w();
      return d.promise;
    },
    onDown: (cause) => events.push(`down: ${cause.message}`),
    onUp() {
      events.push('up');
      up.resolve();
    },
  });
  return {
    h,
    probes,
    events,
    /** Resolves once the probe number `n` (from 0) has been made. */
    probe(n: number): Promise<Deferred> {
      return new Promise((resolve) => {
        const check = () => (probes.length > n ? resolve(probes[n]!) : waiting.push(check));
        check();
      });
    },
    nextUp() {
      const p = up.promise;
      return p.then(() => (up = deferred()));
    },
  };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('server health (unit, probes answered by the test)', () => {
  it('a suspicion is one probe; a probe that succeeds leaves the server up', async () => {
    const t = health();
    t.h.suspect();
    t.h.suspect(); // while one probe runs, no second
    expect(t.probes).to.have.length(1);
    t.probes[0]!.resolve();
    await flush();
    expect(t.h.isDown()).to.equal(false);
    expect(t.events).to.deep.equal([]);
    t.h.close();
  });

  it('a failed probe marks the server down once; it is probed again until a probe succeeds, then up', async () => {
    const t = health();
    t.h.suspect();
    t.probes[0]!.reject(new Error('no answer'));
    await flush();
    expect(t.h.isDown()).to.equal(true);
    expect(t.h.retryAfterMs()).to.be.at.least(1);
    t.h.suspect(); // down already: nothing more
    t.h.markDown(new Error('again'));
    expect(t.events).to.deep.equal(['down: no answer']);
    (await t.probe(1)).reject(new Error('still no answer'));
    const second = await t.probe(2);
    const up = t.nextUp();
    second.resolve();
    await up;
    expect(t.h.isDown()).to.equal(false);
    expect(t.events).to.deep.equal(['down: no answer', 'up']);
    expect(t.h.stats()).to.deep.equal({ probes: 3, probeFailures: 2, downs: 1 });
    t.h.close();
  });

  it('markDown (a wait that ran out) is down at once, without waiting for a probe', () => {
    const t = health();
    t.h.markDown(new Error('COM_CHANGE_USER unanswered'));
    expect(t.h.isDown()).to.equal(true);
    expect(t.events).to.deep.equal(['down: COM_CHANGE_USER unanswered']);
    t.h.close();
  });

  it('with retryAfterMs 0 the server is never marked down', async () => {
    const t = health(0);
    t.h.markDown(new Error('refused'));
    t.h.suspect();
    expect(t.probes).to.have.length(0);
    expect(t.h.isDown()).to.equal(false);
    t.h.close();
  });
});
