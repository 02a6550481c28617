/**
 * Fairness across tenants (issue 11): a quiet tenant's send→SENT latency when the workers are idle, and while another
 * tenant's backlog of BACKLOG messages drains, in one run with the API and the workers of one process (simulated
 * gateway, no latency). The quiet tenant sends QUIET messages one every QUIET_GAP_MS; the latency of each is
 * `sent_at − created_at` of its row (both written by the database). Reported: p50/p99/max per phase, how long the
 * backlog took and its delivered/s. Then throughput against a bare worker, side by side: THROUGHPUT_N messages queued
 * while no worker runs, drained by the app's workers; and THROUGHPUT_N jobs on a bare BullMQ queue drained by a bare
 * worker of the same concurrency doing the same writes with mysql2 (a transaction with the conditional debit and a
 * ledger row with a unique reference on the shared DB, then one status UPDATE in the tenant DB).
 *
 *   npm run bench:fairness
 *
 * Tunables (defaults in brackets): BACKLOG [50000], QUIET [100], QUIET_GAP_MS [50], WORKER_CONCURRENCY [the app's].
 * Everything it creates is removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import type { Config } from '../config/config.js';
import { performance } from 'node:perf_hooks';
import { QueryTypes } from 'sequelize';
import { createDeps } from '../src/deps.js';
import { startServer } from '../src/app/http-app.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import { startWorkers } from '../src/messages/entry-points/queue/workers.js';
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
  stopOnCtrlC,
  throwIfInterrupted,
  tunable,
  writeDocSection,
} from './bench-lib.js';

const DEFAULTS = { BACKLOG: '50000', QUIET: '100', QUIET_GAP_MS: '50', THROUGHPUT_N: '5000' } as const;
const BACKLOG = positiveInt(tunable('BACKLOG', DEFAULTS), 'BACKLOG');
const QUIET = positiveInt(tunable('QUIET', DEFAULTS), 'QUIET');
const GAP = positiveInt(tunable('QUIET_GAP_MS', DEFAULTS), 'QUIET_GAP_MS');
const THROUGHPUT_N = positiveInt(tunable('THROUGHPUT_N', DEFAULTS), 'THROUGHPUT_N');

/** The bare worker: THROUGHPUT_N jobs drained with the same writes as a delivery, nothing else; answers the seconds. */
async function bareWorker(config: Config, org: { id: number; db: string }, concurrency: number): Promise<number> {
  const { host, port, user, password } = config.db;
  const shared = mysql.createPool({ host, port, user, password, database: config.db.name, connectionLimit: concurrency });
  const tenant = mysql.createPool({ host, port, user, password, database: org.db, connectionLimit: concurrency });
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const workerRedis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('bare-deliveries', { connection: redis, prefix: config.queuePrefix });
  let worker: Worker | undefined;
  try {
    const values = Array.from({ length: THROUGHPUT_N }, () => "('+15551234567', 'sms', 'bare', 1)").join(',');
    const [inserted] = await tenant.query<mysql.ResultSetHeader>(`INSERT INTO messages (\`to\`, channel, body, cost) VALUES ${values}`);
    const first = inserted.insertId;
    await queue.addBulk(
      Array.from({ length: THROUGHPUT_N }, (_, i) => ({
        name: 'deliver',
        data: { messageId: first + i },
        opts: { jobId: `bare-${first + i}` },
      })),
    );
    let done = 0;
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      worker = new Worker(
        'bare-deliveries',
        async (job: Job<{ messageId: number }>) => {
          const id = job.data.messageId;
          const conn = await shared.getConnection();
          try {
            await conn.beginTransaction();
            const [debit] = await conn.execute<mysql.ResultSetHeader>(
              'UPDATE orgs SET credit_balance = credit_balance - 1 WHERE id = ? AND credit_balance >= 1',
              [org.id],
            );
            if (debit.affectedRows !== 1) throw new Error('bare worker: no credit');
            await conn.execute(
              "INSERT INTO credit_ledger (org_id, kind, amount, balance_after, message_id, reference) VALUES (?, 'debit', -1, 0, ?, ?)",
              [org.id, id, `bare-debit-${id}`],
            );
            await conn.commit();
          } finally {
            conn.release();
          }
          await tenant.execute("UPDATE messages SET status = 'SENT', sent_at = CURRENT_TIMESTAMP(3) WHERE id = ? AND status = 'QUEUED'", [
            id,
          ]);
        },
        { connection: workerRedis, prefix: config.queuePrefix, concurrency },
      );
      worker.on('completed', () => ++done === THROUGHPUT_N && resolve());
      worker.on('failed', (_job, err) => reject(err));
    });
    return (performance.now() - started) / 1000;
  } finally {
    await worker?.close();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    redis.disconnect();
    workerRedis.disconnect();
    await shared.end();
    await tenant.end();
  }
}

async function main(): Promise<void> {
  stopOnCtrlC();
  const run = `fa${randomBytes(3).toString('hex')}`;
  const config = loadRunConfig(run, { RATE_LIMIT_POINTS: '1000000000', AUTH_FAILURE_LIMIT: '1000000000', RECONCILE_AFTER_MS: '600000' });
  const deps = createDeps(config, { role: 'all' });
  const log = (line: string) => console.error(line);
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 2 });
  let api: Awaited<ReturnType<typeof startServer>> | undefined;
  let workers: ReturnType<typeof startWorkers> | undefined;
  try {
    await prepareRun(config, deps, true);
    const create = async (name: string, credits: number) => {
      const { org, apiKey } = await deps.orgs.create({ name, credits });
      return { id: org.id, apiKey: apiKey!, db: org.dbName! };
    };
    const loud = await create(`${run}-loud`, BACKLOG);
    const quiet = await create(`${run}-quiet`, 2 * QUIET);
    api = await startServer(deps, 0);
    workers = startWorkers(config, deps);
    const url = api.url;
    const send = async (t: { id: number; apiKey: string }, label: string) => {
      const res = await fetch(`${url}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` },
        body: JSON.stringify({ to: '+15551234567', channel: 'sms', body: label }),
      });
      if (res.status !== 202) throw new Error(`send answered ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
    };
    const pending = async (db: string) =>
      Number(
        (
          await root.query<{ n: number }>(`SELECT COUNT(*) AS n FROM \`${db}\`.messages WHERE status IN ('QUEUED', 'SENDING')`, {
            type: QueryTypes.SELECT,
          })
        )[0]!.n,
      );
    const until = async (check: () => Promise<boolean>) => {
      while (!(await check())) {
        throwIfInterrupted();
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    /** The quiet tenant sends QUIET messages labelled `phase`, one every GAP ms; answers their latencies once all are SENT. */
    const quietPhase = async (phase: string) => {
      for (let i = 0; i < QUIET; i++) {
        await send(quiet, `${phase} ${i}`);
        await new Promise((r) => setTimeout(r, GAP));
      }
      await until(async () => (await pending(quiet.db)) === 0);
      const rows = await root.query<{ ms: number }>(
        `SELECT TIMESTAMPDIFF(MICROSECOND, created_at, sent_at) / 1000 AS ms FROM \`${quiet.db}\`.messages WHERE body LIKE :p AND status = 'SENT'`,
        { replacements: { p: `${phase} %` }, type: QueryTypes.SELECT },
      );
      return rows.map((r) => Number(r.ms)).sort((a, b) => a - b);
    };

    log('phase 1: the quiet tenant alone…');
    const idle = await quietPhase('idle');
    log(`phase 2: queueing a backlog of ${BACKLOG} for the loud tenant…`);
    const started = performance.now();
    await mapWithConcurrency(
      Array.from({ length: BACKLOG }, (_, i) => i),
      50,
      (i) => send(loud, `loud ${i}`),
    );
    const queuedSeconds = (performance.now() - started) / 1000;
    const loudLeftAtStart = await pending(loud.db);
    log(`  queued in ${queuedSeconds.toFixed(1)} s; ${loudLeftAtStart} still pending; the quiet tenant sends now`);
    const behind = await quietPhase('behind');
    const loudLeftAfterQuiet = await pending(loud.db);
    await until(async () => (await pending(loud.db)) === 0);
    const drainSeconds = (performance.now() - started) / 1000;

    log(`phase 3: throughput, ${THROUGHPUT_N} messages queued while no worker runs, then drained…`);
    await workers.close();
    const steady = await create(`${run}-steady`, THROUGHPUT_N);
    await mapWithConcurrency(
      Array.from({ length: THROUGHPUT_N }, (_, i) => i),
      50,
      (i) => send(steady, `steady ${i}`),
    );
    const drainStarted = performance.now();
    workers = startWorkers(config, deps);
    await until(async () => (await pending(steady.db)) === 0);
    const appSeconds = (performance.now() - drainStarted) / 1000;
    await workers.close();
    workers = undefined;
    const bare = await create(`${run}-bare`, THROUGHPUT_N);
    const bareSeconds = await bareWorker(config, bare, config.delivery.concurrency);
    const appRate = THROUGHPUT_N / appSeconds;
    const bareRate = THROUGHPUT_N / bareSeconds;
    log(`  app ${appRate.toFixed(0)}/s, bare ${bareRate.toFixed(0)}/s`);

    const row = (name: string, l: number[]) => [
      name,
      l.length,
      formatMs(quantile(l, 0.5)),
      formatMs(quantile(l, 0.99)),
      formatMs(l.at(-1) ?? 0),
    ];
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${await describeMachine(root)}.`,
      `Command: \`${commandLine('bench:fairness', [...Object.keys(DEFAULTS), 'WORKER_CONCURRENCY', 'FAIR_SHARE_HALF_LIFE_MS'])}\`.`,
      `API and workers in one process (\`WORKER_CONCURRENCY=${config.delivery.concurrency}\`, simulated gateway without latency, ` +
        `\`FAIR_SHARE_HALF_LIFE_MS=${config.fairShareHalfLifeMs}\`). The quiet tenant sends ${QUIET} messages, one every ${GAP} ms; ` +
        `latency = \`sent_at − created_at\` of each row.`,
      '',
      markdownTable(['quiet tenant', 'messages', 'p50 (ms)', 'p99 (ms)', 'max (ms)'], 'lrrrr', [
        row('workers idle', idle),
        row(`behind the loud tenant's backlog of ${BACKLOG}`, behind),
      ]),
      '',
      `The loud tenant's ${BACKLOG} messages were accepted in ${queuedSeconds.toFixed(1)} s; ${loudLeftAtStart} were still pending when the quiet ` +
        `tenant started and ${loudLeftAfterQuiet} when its last message was SENT; the whole backlog was delivered ` +
        `${drainSeconds.toFixed(1)} s after the first was sent (${(BACKLOG / drainSeconds).toFixed(0)} delivered/s, the quiet messages included). ` +
        `Before fair shares (one FIFO queue), the issue measured 23,039 ms for a quiet message behind a backlog of 20,000.`,
      '',
      markdownTable(['throughput (same run)', 'messages', 'seconds', 'delivered/s', 'ratio'], 'lrrrr', [
        [
          `bare worker: mysql2 debit transaction + ledger row, then a status UPDATE (concurrency ${config.delivery.concurrency})`,
          THROUGHPUT_N,
          bareSeconds.toFixed(2),
          bareRate.toFixed(0),
          '1.00×',
        ],
        [
          `the app's delivery workers (concurrency ${config.delivery.concurrency})`,
          THROUGHPUT_N,
          appSeconds.toFixed(2),
          appRate.toFixed(0),
          `${(appRate / bareRate).toFixed(2)}×`,
        ],
      ]),
    ];
    console.log(lines.join('\n'));
    log(`wrote ${await writeDocSection('fairness', '## Fairness across tenants', lines)}`);
  } finally {
    await workers?.close().catch(() => undefined);
    await api?.stop(1000).catch(() => undefined);
    await root.close();
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main);
