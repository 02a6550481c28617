/** RecencyMap: a map in order of use, touched in O(1) without deleting and re-setting its index's keys. */
import { expect } from 'chai';
import { RecencyMap } from '../../../src/platform/lib/recency-map.js';

const order = (m: RecencyMap<string, number>) => [...m.values()];

describe('RecencyMap (unit)', () => {
  it('keeps entries oldest first; set and touch make a key the newest; get does not', () => {
    const m = new RecencyMap<string, number>().set('a', 1).set('b', 2).set('c', 3);
    expect(order(m)).to.deep.equal([1, 2, 3]);
    expect(m.get('a')).to.equal(1);
    expect(order(m)).to.deep.equal([1, 2, 3]);
    expect(m.touch('a')).to.equal(1);
    expect(order(m)).to.deep.equal([2, 3, 1]);
    m.set('b', 20);
    expect(order(m)).to.deep.equal([3, 1, 20]);
    expect(m.oldestKey()).to.equal('c');
    expect(m.touch('zz')).to.equal(undefined);
    expect(m.size).to.equal(3);
  });

  it('deletes from the oldest end, the newest end and the middle; empties and refills', () => {
    const m = new RecencyMap<string, number>().set('a', 1).set('b', 2).set('c', 3).set('d', 4);
    expect(m.delete('b')).to.equal(true);
    expect(m.delete('b')).to.equal(false);
    expect(m.delete('a')).to.equal(true);
    expect(m.delete('d')).to.equal(true);
    expect(order(m)).to.deep.equal([3]);
    expect(m.oldestKey()).to.equal('c');
    m.touch('c');
    expect(m.delete('c')).to.equal(true);
    expect(order(m)).to.deep.equal([]);
    expect(m.oldestKey()).to.equal(undefined);
    m.set('e', 5).set('f', 6);
    expect(order(m)).to.deep.equal([5, 6]);
    expect(m.has('e') && !m.has('a')).to.equal(true);
  });

  it('lets the current entry be deleted while iterating (the idle sweep retires as it goes)', () => {
    const m = new RecencyMap<string, number>();
    for (const [i, k] of ['a', 'b', 'c', 'd'].entries()) m.set(k, i);
    const seen: number[] = [];
    for (const v of m.values()) {
      seen.push(v);
      if (v % 2 === 0) m.delete(['a', 'b', 'c', 'd'][v]!);
    }
    expect(seen).to.deep.equal([0, 1, 2, 3]);
    expect(order(m)).to.deep.equal([1, 3]);
  });

  it('matches a Map kept in order by delete-and-set over 10,000 seeded operations', () => {
    const m = new RecencyMap<number, number>();
    const ref = new Map<number, number>();
    let x = 7;
    const next = () => ((x = (x * 1_103_515_245 + 12_345) % 2 ** 31), x);
    for (let i = 0; i < 10_000; i++) {
      const key = next() % 50;
      const op = next() % 4;
      if (op === 0) {
        m.set(key, i);
        ref.delete(key);
        ref.set(key, i);
      } else if (op === 1) {
        expect(m.delete(key)).to.equal(ref.delete(key));
      } else if (op === 2 && ref.has(key)) {
        const v = ref.get(key)!;
        ref.delete(key);
        ref.set(key, v);
        expect(m.touch(key)).to.equal(v);
      } else expect(m.get(key)).to.equal(ref.get(key));
    }
    expect([...m.values()]).to.deep.equal([...ref.values()]);
    expect(m.oldestKey()).to.equal(ref.keys().next().value);
  });
});
