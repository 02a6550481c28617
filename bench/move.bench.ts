/**
 * An online move under traffic (issue 21): a tenant with MESSAGES messages (1,000,000 by default) moves from the run's
 * usual MariaDB to a second `mariadbd` (scripts/local-mariadb.ts) while POST /messages and GET /messages run on it
 * without a break and the workers deliver what is posted. Reported: the write pause (measured by the mover, from the
 * pause to the switch, and as clients saw it: the longest time without an accepted POST), answers by status during
 * the move, the copy's rate and each step's time, POST/GET throughput and latency before the move (the baseline,
 * same run) and during it, and whether every accepted message is on the new server.
 *
 *   flock /tmp/bench.lock npm run bench:move
 *
 * Tunables (defaults in brackets): MESSAGES [1000000], POST_CLIENTS [4], GET_CLIENTS [4], BASELINE_SECONDS [10].
 * Everything it creates is removed at the end (the second server with its data directory too). Filling the tenant
 * uses MariaDB's sequence engine (`seq_1_to_N`).
 */
import { randomBytes } from 'node:crypto';
import { QueryTypes } from 'sequelize';
import { createDeps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import type { MoveStep } from '../src/orgs/domain/tenant-mover.js';
import { startWorkers } from '../src/messages/entry-points/queue/workers.js';
import { startLocalMariaDb, type LocalMariaDb } from '../scripts/local-mariadb.js';
import {
  closeAndCleanUp,
  commandLine,
  describeMachine,
  formatMs,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  quantile,
  runBenchFile,
  runLoadThread,
  stopOnCtrlC,
  tunable,
  writeDocSection,
} from './bench-lib.js';

const DEFAULTS = { MESSAGES: '1000000', POST_CLIENTS: '4', GET_CLIENTS: '4', BASELINE_SECONDS: '10' } as const;
const MESSAGES = positiveInt(tunable('MESSAGES', DEFAULTS), 'MESSAGES');
const POST_CLIENTS = positiveInt(tunable('POST_CLIENTS', DEFAULTS), 'POST_CLIENTS');
const GET_CLIENTS = positiveInt(tunable('GET_CLIENTS', DEFAULTS), 'GET_CLIENTS');
const BASELINE_SECONDS = positiveInt(tunable('BASELINE_SECONDS', DEFAULTS), 'BASELINE_SECONDS');

interface TrafficSpec {
  url: string;
  org: { id: number; apiKey: string };
  posts: number;
  gets: number;
  /** Set to 1 by the main thread to stop the clients. */
  stop: SharedArrayBuffer;
}
/** One request: when it started and ended (epoch ms), its status and error code, and the message id of a 202. */
type Record_ = [start: number, end: number, status: number, code: string, id: number];
interface TrafficResult {
  posts: Record_[];
  gets: Record_[];
}

/** The load thread: POST and GET clients on one tenant until told to stop; a refused request is tried again 20 ms later. */
async function trafficThread(spec: TrafficSpec): Promise<TrafficResult> {
  const stop = new Int32Array(spec.stop);
  const headers = { 'content-type': 'application/json', 'x-org-id': String(spec.org.id), authorization: `Bearer ${spec.org.apiKey}` };
  const out: TrafficResult = { posts: [], gets: [] };
  const client = async (kind: 'posts' | 'gets', n: number) => {
    for (let i = 0; Atomics.load(stop, 0) === 0; i++) {
      const start = Date.now();
      let status = 0;
      let code: string;
      let id = 0;
      try {
        const res =
          kind === 'posts'
            ? await fetch(`${spec.url}/messages`, {
                method: 'POST',
                headers,
                body: JSON.stringify({ to: '+15551230000', channel: 'sms', body: `during the move ${n}-${i}` }),
              })
            : await fetch(`${spec.url}/messages?limit=20`, { headers });
        status = res.status;
        const body = (await res.json()) as { message?: { id: number }; error?: { code: string } };
        code = body.error?.code ?? '';
        id = body.message?.id ?? 0;
      } catch (err) {
        code = (err as Error).message;
      }
      out[kind].push([start, Date.now(), status, code, id]);
      if (status !== 200 && status !== 202) await new Promise((r) => setTimeout(r, 20));
    }
  };
  await Promise.all([
    ...Array.from({ length: spec.posts }, (_, n) => client('posts', n)),
    ...Array.from({ length: spec.gets }, (_, n) => client('gets', n)),
  ]);
  return out;
}

/** Throughput and latency of requests that ended in [from, to). */
function summary(records: Record_[], from: number, to: number) {
  const inside = records.filter((r) => r[1] >= from && r[1] < to);
  const ok = inside.filter((r) => r[2] === 200 || r[2] === 202);
  const latencies = ok.map((r) => r[1] - r[0]).sort((a, b) => a - b);
  const byStatus = new Map<string, number>();
  for (const r of inside) {
    const key = r[2] === 200 || r[2] === 202 ? String(r[2]) : `${r[2] || 'network'} ${r[3]}`;
    byStatus.set(key, (byStatus.get(key) ?? 0) + 1);
  }
  return {
    perSecond: ok.length / ((to - from) / 1000),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    byStatus: [...byStatus].map(([k, n]) => `${n} × ${k}`).join(', '),
  };
}

/** The longest time in [from, to) between two accepted POSTs (as their answers arrived), over every client. */
function longestWriteGap(posts: Record_[], from: number, to: number): number {
  const ends = posts
    .filter((r) => r[2] === 202 && r[1] >= from && r[1] < to)
    .map((r) => r[1])
    .sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < ends.length; i++) gap = Math.max(gap, ends[i]! - ends[i - 1]!);
  return gap;
}

async function main(): Promise<void> {
  stopOnCtrlC();
  const run = `mv${randomBytes(3).toString('hex')}`;
  const config = loadRunConfig(run, { RATE_LIMIT_POINTS: '100000000', AUTH_FAILURE_LIMIT: '100000000', DELIVERY_BACKOFF_MS: '200' });
  const deps = createDeps(config, { role: 'all' });
  const log = (line: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 1 });
  let second: LocalMariaDb | undefined;
  let api: Awaited<ReturnType<typeof startServer>> | undefined;
  let workers: ReturnType<typeof startWorkers> | undefined;
  try {
    await prepareRun(config, deps, true);
    second = await startLocalMariaDb({ bufferPoolMb: 128 });
    const target = await deps.servers.add({ name: `${run}-b`, host: second.host, port: second.port, user: 'root', password: '' });
    const { org, apiKey } = await deps.orgs.create({ name: `${run}-big`, credits: 1_000_000_000, server: 'default' });
    const db = `\`${org.dbName!}\``;
    log(`filling tenant ${org.id} with ${MESSAGES} messages…`);
    const filled = performance.now();
    for (let from = 1; from <= MESSAGES; from += 250_000) {
      const to = Math.min(MESSAGES, from + 249_999);
      await root.query(
        `INSERT INTO ${db}.messages (\`to\`, channel, body, status, cost, attempts, provider_message_id, created_at, updated_at, sent_at)
         SELECT '+15551230000', 'sms', CONCAT('Your verification code is ', LPAD(seq MOD 1000000, 6, '0'), '. It expires in ten minutes; message ', seq, '.'),
                'SENT', 1, 1, CONCAT('sim-', seq), NOW(3), NOW(3), NOW(3) FROM ${db}.seq_${from}_to_${to}`,
      );
    }
    log(`filled in ${((performance.now() - filled) / 1000).toFixed(1)} s; waiting for the server to flush it…`);
    // The fill leaves the buffer pool dirty: the baseline would measure the flushing, not the traffic.
    for (let waited = 0; waited < 90; waited++) {
      const [dirty] = await root.query<{ Value: string }>("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'", {
        type: QueryTypes.SELECT,
      });
      if (Number(dirty?.Value ?? 0) < 200) break;
      await new Promise((r) => setTimeout(r, 1000));
    }

    api = await startServer(deps, 0);
    workers = startWorkers(config, deps);
    const stop = new SharedArrayBuffer(4);
    const traffic = runLoadThread<TrafficSpec, TrafficResult>(import.meta.url, {
      url: api.url,
      org: { id: org.id, apiKey: apiKey! },
      posts: POST_CLIENTS,
      gets: GET_CLIENTS,
      stop,
    });
    log(`traffic: ${POST_CLIENTS} POST and ${GET_CLIENTS} GET clients; 3 s of warm-up, then the baseline for ${BASELINE_SECONDS} s…`);
    await new Promise((r) => setTimeout(r, 3000));
    const baselineFrom = Date.now();
    await new Promise((r) => setTimeout(r, BASELINE_SECONDS * 1000));

    const steps: [MoveStep | 'START' | 'END', number][] = [];
    const moverDeps = createDeps(config, {
      subscribe: false,
      beforeMoveStep: (step) => {
        steps.push([step, Date.now()]);
        log(`move: ${step}`);
      },
    });
    const moveFrom = Date.now();
    steps.push(['START', moveFrom]);
    let result;
    try {
      result = await moverDeps.mover.move(org.id, target.name);
    } finally {
      await moverDeps.close();
    }
    const moveTo = Date.now();
    steps.push(['END', moveTo]);
    log(`moved: ${JSON.stringify(result)}`);
    await new Promise((r) => setTimeout(r, 5000));
    Atomics.store(new Int32Array(stop), 0, 1);
    const seen = await traffic;
    const afterTo = Date.now();

    // Every accepted message is on the new server.
    const accepted = seen.posts.filter((r) => r[2] === 202).map((r) => r[4]);
    const target_ = await deps.servers.adminForDatabase(target.id, org.dbName!);
    let found = 0;
    try {
      for (let i = 0; i < accepted.length; i += 1000) {
        const [r] = await target_.query<{ n: number }>('SELECT COUNT(*) AS n FROM messages WHERE id IN (:ids)', {
          replacements: { ids: accepted.slice(i, i + 1000) },
          type: QueryTypes.SELECT,
        });
        found += Number(r?.n ?? 0);
      }
    } finally {
      await target_.close();
    }
    const lost = accepted.length - found;
    const refused = seen.posts.filter((r) => r[2] === 503).map((r) => r[1]);
    const refusedSpan = refused.length ? Math.max(...refused) - Math.min(...refused) : 0;

    const base = { post: summary(seen.posts, baselineFrom, moveFrom), get: summary(seen.gets, baselineFrom, moveFrom) };
    const during = { post: summary(seen.posts, moveFrom, moveTo), get: summary(seen.gets, moveFrom, moveTo) };
    const after = { post: summary(seen.posts, moveTo, afterTo), get: summary(seen.gets, moveTo, afterTo) };
    const stepRows = steps
      .slice(0, -1)
      .map(([name, at], i) => [name === 'START' ? 'checks, lock, identities' : name, ((steps[i + 1]![1] - at) / 1000).toFixed(1)]);
    const copyRate = (result.rows.messages ?? 0) / (result.copyMs / 1000);
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${await describeMachine(root)}; the second server is a \`mariadbd\` on the same machine (128 MB buffer pool, like the first).`,
      `Command: \`${commandLine('bench:move', Object.keys(DEFAULTS))}\`.`,
      `One tenant with ${MESSAGES.toLocaleString('en')} messages (SMS-sized) moved from the default server to the second while ${POST_CLIENTS} clients POST /messages and ${GET_CLIENTS} GET /messages?limit=20 on it without a break (a refused request is sent again 20 ms later), and the workers deliver what is posted; API, workers, mover and both servers share the machine. Baseline: the same traffic during the ${BASELINE_SECONDS} s before the move, in the same run.`,
      '',
      markdownTable(['', 'result'], 'll', [
        [
          'writes paused (mover: pause → switch)',
          `**${result.writePauseMs} ms**: waiting for writes in flight ${result.writePause.fenceMs} ms, last ${result.writePause.lastRows} rows carried over ${result.writePause.catchUpMs} ms, compared ${result.writePause.verifyMs} ms, switch ${result.writePause.switchMs} ms`,
        ],
        [
          'longest time without an accepted POST, during the move',
          `${longestWriteGap(seen.posts, moveFrom, moveTo)} ms (baseline: ${longestWriteGap(seen.posts, baselineFrom, moveFrom)} ms)`,
        ],
        ['POST answers during the move', `${during.post.byStatus} (the 503s within ${refusedSpan} ms)`],
        ['GET answers during the move', during.get.byStatus],
        [
          'copy',
          `${(result.rows.messages ?? 0).toLocaleString('en')} rows in ${(result.copyMs / 1000).toFixed(1)} s: **${Math.round(copyRate).toLocaleString('en')} rows/s** (the offline move refused the tenant, reads too, for at least this long)`,
        ],
        ['changed rows carried over', String(result.changesApplied)],
        ['whole move (old copy dropped after the grace period)', `${((moveTo - moveFrom) / 1000).toFixed(1)} s`],
        ['accepted POSTs missing on the new server', `${lost} of ${accepted.length}`],
      ]),
      '',
      markdownTable(
        ['traffic', 'POST/s', 'POST p50 / p99 (ms)', 'GET/s', 'GET p50 / p99 (ms)', 'POST/s ÷ baseline'],
        'lrrrrr',
        [
          ['before the move (baseline)', base.post, base.get],
          ['during the move', during.post, during.get],
          ['after the move', after.post, after.get],
        ].map(([name, p, g]) => {
          const post = p as ReturnType<typeof summary>;
          const get = g as ReturnType<typeof summary>;
          return [
            name as string,
            post.perSecond.toFixed(0),
            `${formatMs(post.p50)} / ${formatMs(post.p99)}`,
            get.perSecond.toFixed(0),
            `${formatMs(get.p50)} / ${formatMs(get.p99)}`,
            `${(post.perSecond / base.post.perSecond).toFixed(2)}×`,
          ];
        }),
      ),
      '',
      `Steps (s): ${stepRows.map(([n, s]) => `${n} ${s}`).join(' · ')}.`,
    ];
    console.log(lines.join('\n'));
    if (lost !== 0) throw new Error(`${lost} accepted messages are missing on the new server`);
    log(`wrote ${await writeDocSection('move', '## Online move of a large tenant under traffic', lines)}`);
  } finally {
    await workers?.close().catch(() => undefined);
    await api?.stop(1000).catch(() => undefined);
    await root.close();
    await closeAndCleanUp(deps, config, run, log, true);
    await second?.destroy();
  }
}

runBenchFile(main, trafficThread);
