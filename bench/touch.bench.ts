/**
 * Touching a key of a map kept in order of use, as the tenant instance cache and the connections' heat do on every
 * request: a `Map` re-ordered by delete-and-set against lru-cache (what they use now), at fleet sizes,
 * for the keys real traffic touches (one hot tenant, two taking turns, Zipf(1.0) over all of them). CPU only.
 *
 *   npm run bench:touch
 */
import os from 'node:os';
import { LRUCache } from 'lru-cache';
import { commandLine, markdownTable, writeDocSection, zipfSampler } from './bench-lib.js';

const SIZES = [100, 1_000, 10_000, 20_000];
const TOUCHES = 200_000;

type Touch = (key: number) => void;

function mapTouch(n: number): Touch {
  const m = new Map<number, { key: number }>();
  for (let i = 0; i < n; i++) m.set(i, { key: i });
  return (key) => {
    const v = m.get(key)!;
    m.delete(key);
    m.set(key, v);
  };
}

function lruTouch(n: number): Touch {
  const m = new LRUCache<number, { key: number }>({ max: n });
  for (let i = 0; i < n; i++) m.set(i, { key: i });
  return (key) => void m.get(key);
}

/** Nanoseconds per touch, the best of 3 runs over the same keys. */
function measure(make: (n: number) => Touch, n: number, keys: number[]): number {
  let best = Infinity;
  for (let run = 0; run < 3; run++) {
    const touch = make(n);
    const started = process.hrtime.bigint();
    for (const k of keys) touch(k);
    best = Math.min(best, Number(process.hrtime.bigint() - started) / keys.length);
  }
  return best;
}

async function main(): Promise<void> {
  const rows: string[][] = [];
  for (const n of SIZES) {
    const zipf = zipfSampler(n, 1.0, 42);
    const patterns: Array<[string, number[]]> = [
      ['one key', Array.from({ length: TOUCHES }, () => 0)],
      ['two keys in turn', Array.from({ length: TOUCHES }, (_, i) => i % 2)],
      ['Zipf(1.0)', Array.from({ length: TOUCHES }, () => zipf())],
    ];
    for (const [name, keys] of patterns) {
      const [map, lru] = [measure(mapTouch, n, keys), measure(lruTouch, n, keys)];
      rows.push([String(n), name, map.toFixed(0), lru.toFixed(0), `${(map / lru).toFixed(1)}×`]);
      console.error(`${n} ${name}: Map ${map.toFixed(0)} ns, lru-cache ${lru.toFixed(0)} ns`);
    }
  }
  const cpus = os.cpus();
  const lines = [
    `Measured on ${new Date().toISOString().slice(0, 10)}: ${cpus.length} cores (${cpus[0]?.model.trim()}), Node ${process.version}.`,
    `Command: \`${commandLine('bench:touch', [])}\`. ${TOUCHES.toLocaleString('en')} touches per pattern, best of 3.`,
    '',
    markdownTable(['entries', 'keys touched', 'Map delete + set (ns/touch)', 'lru-cache get (ns/touch)', 'Map / lru-cache'], 'llrrr', rows),
  ];
  console.log(lines.join('\n'));
  console.error(`wrote ${await writeDocSection('touch', '## Touching a key of a map kept in order of use', lines)}`);
}

void main();
