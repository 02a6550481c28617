import { expect } from 'chai';
import { batchedLoader, createNextTurn } from '../../../src/platform/lib/batch.js';

describe('batch: work of one batch of I/O callbacks done together', () => {
  it('batchedLoader: calls in one turn make one load of their distinct keys, each caller answered with its own value', async () => {
    const loads: string[][] = [];
    const load = batchedLoader(async (keys: string[]) => {
      loads.push(keys);
      return keys.map((k) => (k === 'missing' ? undefined : k.toUpperCase()));
    });
    const answers = await Promise.all([load('a'), load('b'), load('a'), load('missing')]);
    expect(answers).to.deep.equal(['A', 'B', 'A', undefined]);
    expect(loads).to.deep.equal([['a', 'b', 'missing']]);
    expect(await load('c')).to.equal('C');
    expect(loads).to.have.length(2);
  });

  it('batchedLoader: at most `max` keys a load; a failed load fails exactly its own callers', async () => {
    const loads: number[][] = [];
    const load = batchedLoader(async (keys: number[]) => {
      loads.push(keys);
      if (keys.includes(3)) throw new Error('boom');
      return keys.map((k) => k * 10);
    }, 2);
    const answers = await Promise.allSettled([load(1), load(2), load(3), load(4), load(5)]);
    expect(loads).to.deep.equal([[1, 2], [3, 4], [5]]);
    expect(answers.map((a) => (a.status === 'fulfilled' ? a.value : (a.reason as Error).message))).to.deep.equal([
      10,
      20,
      'boom',
      'boom',
      50,
    ]);
  });

  it('createNextTurn: sends asked for in one turn start together, in order, after the current callbacks', async () => {
    const next = createNextTurn();
    const started: string[] = [];
    const send = (name: string) => () => {
      started.push(name);
      return Promise.resolve(name);
    };
    const both = Promise.all([next(send('first')), next(send('second'))]);
    started.push('sync');
    expect(await both).to.deep.equal(['first', 'second']);
    expect(started).to.deep.equal(['sync', 'first', 'second']);
    const refused = await next(() => Promise.reject(new Error('refused'))).catch((err: Error) => err.message);
    expect(refused).to.equal('refused');
  });
});
