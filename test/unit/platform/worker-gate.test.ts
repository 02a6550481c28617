/** The org gate's rules around a processor, over fake permits and jobs (the Redis permits: test/messages/org-limits.test.ts). */
import { expect } from 'chai';
import { DelayedError, type Job } from 'bullmq';
import type { OrgPermits, PermitGrant } from '../../../src/platform/queue/org-permits.js';
import { gateByOrg } from '../../../src/platform/queue/worker-gate.js';
import { silent } from '../fakes.js';

/** Fake permits: scripted acquire answers, released ids recorded, a queue of parked ids to hand out. */
function fakeSlots(over: Partial<OrgPermits> = {}, parked: string[] = []) {
  const released: [string, boolean][] = [];
  const permits: OrgPermits = {
    acquire: () => Promise.resolve<PermitGrant>({ granted: true, parked: 0 }),
    renew: () => Promise.resolve(true),
    release: (_org, jobId, wake = true) => {
      released.push([jobId, wake]);
      return Promise.resolve(wake ? parked.shift() : undefined);
    },
    load: (orgId) => Promise.resolve({ orgId, inFlight: 0, parked: 0 }),
    busiest: () => Promise.resolve([]),
    ...over,
  };
  return { permits, released };
}

function fakeJob(id = 'job-1') {
  const delayedTo: number[] = [];
  const job = {
    id,
    data: { orgId: 7 },
    moveToDelayed: (ts: number) => {
      delayedTo.push(ts);
      return Promise.resolve();
    },
  } as unknown as Job<{ orgId: number }, string>;
  return { job, delayedTo };
}

const options = (permits: OrgPermits, extra: Partial<Parameters<typeof gateByOrg>[1]> = {}) => ({
  permits,
  limitOf: () => Promise.resolve(2),
  promote: () => Promise.resolve(),
  stateOf: () => Promise.resolve('unknown'),
  leaseMs: 30_000,
  maxParkMs: 60_000,
  logger: silent,
  ...extra,
});

describe('org gate (unit)', () => {
  it('runs the job in a permit and releases it, waking the oldest parked job with it', async () => {
    const { permits, released } = fakeSlots({}, ['parked-1']);
    const woken: string[] = [];
    const gated = gateByOrg(() => Promise.resolve('done'), options(permits, { promote: (id) => (woken.push(id), Promise.resolve()) }));
    expect(await gated(fakeJob().job, 'token')).to.equal('done');
    expect(released).to.deep.equal([['job-1', true]]);
    expect(woken).to.deep.equal(['parked-1']);
  });

  it('parks the job (moved to delayed, DelayedError) when the org has its cap running; the processor does not run', async () => {
    const { permits } = fakeSlots({ acquire: () => Promise.resolve({ granted: false, parked: 3 }) });
    let ran = false;
    const gated = gateByOrg(() => ((ran = true), Promise.resolve('done')), options(permits));
    const { job, delayedTo } = fakeJob();
    const before = Date.now();
    const err = await gated(job, 'token').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(DelayedError);
    expect(ran).to.equal(false);
    expect(delayedTo).to.have.length(1);
    expect(delayedTo[0]! - before).to.be.within(1000, 60_000 + 50);
  });

  it('runs the job ungated when the cap cannot be read (the processor meets the outage itself) or the permits cannot answer', async () => {
    const outage = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    for (const [label, over, limitOf] of [
      ['the org', {}, () => Promise.reject(outage)],
      ['the permits', { acquire: () => Promise.reject(outage) }, () => Promise.resolve(2)],
    ] as const) {
      const { permits, released } = fakeSlots(over);
      const gated = gateByOrg(() => Promise.resolve('done'), options(permits, { limitOf }));
      expect(await gated(fakeJob().job, 'token'), label).to.equal('done');
      expect(released, label).to.deep.equal([]);
    }
  });

  it('a woken job that cannot be promoted but is running or waiting to run keeps the permit handed to it', async () => {
    for (const state of ['active', 'waiting', 'prioritized', 'delayed']) {
      const { permits, released } = fakeSlots({}, ['running-1', 'other']);
      const gated = gateByOrg(
        () => Promise.resolve('done'),
        options(permits, { promote: () => Promise.reject(new Error('not delayed')), stateOf: () => Promise.resolve(state) }),
      );
      await gated(fakeJob().job, 'token');
      expect(released, state).to.deep.equal([['job-1', true]]);
    }
  });

  it('passes the permit on when a woken job is finished or gone, at most three times, then gives it back', async () => {
    const { permits, released } = fakeSlots({}, ['gone-1', 'gone-2', 'gone-3', 'never']);
    const tried: string[] = [];
    const gated = gateByOrg(
      () => Promise.resolve('done'),
      options(permits, { promote: (id) => (tried.push(id), Promise.reject(new Error('not delayed'))) }),
    );
    await gated(fakeJob().job, 'token');
    expect(released).to.deep.equal([
      ['job-1', true],
      ['gone-1', true],
      ['gone-2', true],
      ['gone-3', false],
    ]);
    // Each is tried twice (once more after 50 ms, in case it was still on its way to the delayed set).
    expect(tried).to.deep.equal(['gone-1', 'gone-1', 'gone-2', 'gone-2', 'gone-3', 'gone-3']);
  });

  it('releases the permit even when the processor throws', async () => {
    const { permits, released } = fakeSlots();
    const gated = gateByOrg<{ orgId: number }, string>(() => Promise.reject(new Error('boom')), options(permits));
    expect(await gated(fakeJob().job, 'token').catch((e: Error) => e.message)).to.equal('boom');
    expect(released).to.deep.equal([['job-1', true]]);
  });
});
