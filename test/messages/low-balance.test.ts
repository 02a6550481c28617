/**
 * Once an org's balance no longer covers a message, every API process answers 402 at once — not after its org cache's
 * TTL — while a balance that does keeps the send path free of shared-DB reads. The worker that debits the balance below
 * the most a message can cost publishes an org event; here the API's and the workers' deps are separate (two
 * registries, two Redis subscribers), and the API caches orgs for ten minutes, so only the event can explain a 402.
 */
import { expect } from 'chai';
import type { Deps } from '../../src/deps.js';
import { startWorkers, type Workers } from '../../src/messages/entry-points/queue/workers.js';
import { createTenant, eventually, startApi, testConfig, testDeps, type TestApi } from '../helpers.js';

const ENV = { ORG_CACHE_TTL_MS: '600000' };

describe('a balance that ran out is refused at once (402) by every API process', () => {
  let api: TestApi;
  let workerDeps: Deps;
  let workers: Workers;

  before(async () => {
    api = await startApi(ENV);
    workerDeps = testDeps(ENV, { subscribe: true });
    workers = startWorkers(testConfig(ENV), workerDeps);
  });
  after(async () => {
    await workers.close();
    await workerDeps.close();
    await api.stop();
  });

  it('three 1-credit messages spend a balance of 3; the fourth POST, right after, is 402 INSUFFICIENT_CREDITS and stores nothing', async () => {
    const org = await createTenant(api.deps, { credits: 3 });
    const sms = { channel: 'sms', to: '+15551234567', body: 'hello' };
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await api.request('POST', '/messages', { org, body: sms });
      expect(res.status).to.equal(202);
      ids.push(res.body.message.id);
    }
    const sent = async () => {
      const list = (await api.request('GET', '/messages', { org })).body as { status: string }[];
      return list.filter((m) => m.status === 'SENT').length === 3;
    };
    expect(await eventually(sent, 15_000)).to.equal(true);
    // The API cached the org (balance 3) on the first POST; only the worker's event can have refreshed it.
    const refused = await eventually(async () => {
      const res = await api.request('POST', '/messages', { org, body: sms });
      expect([402, 202]).to.include(res.status);
      return res.status === 402;
    }, 1000);
    expect(refused, 'a 402 within a second of the last debit').to.equal(true);
    const last = await api.request('POST', '/messages', { org, body: sms });
    expect(last.status).to.equal(402);
    expect(last.body.error).to.deep.include({ code: 'INSUFFICIENT_CREDITS', details: { cost: 1, balance: 0 } });
  });
});
