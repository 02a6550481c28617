/**
 * Where a server process spends its CPU in each measured window of a benchmark, per request.
 *
 * `FLEET_CPU_PROF=<dir> npm run bench:fleet` runs the API with `--cpu-prof` into <dir> and writes `windows.json`
 * there: each load run's name, start and end (`process.hrtime`, the same monotonic clock as the profile's
 * microsecond timestamps) and its responses. This cuts the profile's samples to those windows and prints, for each
 * window name, the functions with the most self and inclusive time in microseconds per request; with two names,
 * the difference between them.
 *
 *   node --import tsx bench/profile-windows.ts <dir> [top=40] [nameA nameB]
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}
export interface ProfileWindow {
  name: string;
  /** Microseconds on the monotonic clock. */
  start: number;
  end: number;
  responses: number;
}

function frameName(f: CallFrame): string {
  const file = f.url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules\/|src\/|bench\/)/, '$1');
  return `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
}

/** Self and inclusive microseconds per function name over the samples inside the given windows. */
function tally(profile: CpuProfile, windows: readonly ProfileWindow[]) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let t = profile.startTime;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    const next = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1]! : 0;
    if (!windows.some((w) => t >= w.start && t < w.end)) continue;
    // A sample stands for the time until the next one.
    const weight = next;
    total += weight;
    const leafId = profile.samples[i]!;
    const leaf = frameName(byId.get(leafId)!.callFrame);
    let id: number | undefined = leafId;
    self.set(leaf, (self.get(leaf) ?? 0) + weight);
    const seen = new Set<string>();
    while (id !== undefined) {
      const name = frameName(byId.get(id)!.callFrame);
      if (!seen.has(name)) {
        seen.add(name);
        inclusive.set(name, (inclusive.get(name) ?? 0) + weight);
      }
      id = parent.get(id);
    }
  }
  return { self, inclusive, total };
}

async function main(): Promise<void> {
  const [dir, topArg, nameA, nameB] = process.argv.slice(2);
  if (!dir) throw new Error('usage: profile-windows.ts <dir> [top] [nameA nameB]');
  const top = Number(topArg ?? 40);
  const windows = JSON.parse(await readFile(path.join(dir, 'windows.json'), 'utf8')) as ProfileWindow[];
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  const profiles = await Promise.all(files.map(async (f) => JSON.parse(await readFile(path.join(dir, f), 'utf8')) as CpuProfile));
  const names = nameA && nameB ? [nameA, nameB] : [...new Set(windows.map((w) => w.name))];
  const perName = new Map<string, { self: Map<string, number>; inclusive: Map<string, number>; perRequest: number }>();
  for (const name of names) {
    const ws = windows.filter((w) => w.name === name);
    const responses = ws.reduce((s, w) => s + w.responses, 0);
    const self = new Map<string, number>();
    const inclusive = new Map<string, number>();
    let total = 0;
    for (const p of profiles) {
      const r = tally(p, ws);
      total += r.total;
      for (const [k, v] of r.self) self.set(k, (self.get(k) ?? 0) + v);
      for (const [k, v] of r.inclusive) inclusive.set(k, (inclusive.get(k) ?? 0) + v);
    }
    if (responses === 0 || total === 0) continue;
    const per = (v: number) => v / responses;
    perName.set(name, { self, inclusive, perRequest: per(total) });
    console.log(`\n## ${name}: ${responses} responses, ${per(total).toFixed(1)} µs sampled per request`);
    for (const [label, m] of [
      ['self', self],
      ['inclusive', inclusive],
    ] as const) {
      console.log(`\n### ${label} µs/request`);
      for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${per(v).toFixed(1).padStart(8)}  ${k}`);
    }
  }
  if (names.length === 2 && perName.size === 2) {
    const [a, b] = names.map((n) => perName.get(n)!);
    const responsesOf = (n: string) => windows.filter((w) => w.name === n).reduce((s, w) => s + w.responses, 0);
    const [ra, rb] = names.map(responsesOf) as [number, number];
    for (const kind of ['self', 'inclusive'] as const) {
      const keys = new Set([...a![kind].keys(), ...b![kind].keys()]);
      const diff = [...keys].map((k) => [k, (b![kind].get(k) ?? 0) / rb - (a![kind].get(k) ?? 0) / ra] as const);
      console.log(`\n## ${kind} µs/request, ${names[1]} minus ${names[0]}`);
      for (const [k, v] of diff.sort((x, y) => Math.abs(y[1]) - Math.abs(x[1])).slice(0, top))
        console.log(`${v.toFixed(1).padStart(8)}  ${k}`);
    }
  }
}

await main();
