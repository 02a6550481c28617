/**
 * Outbox reconciler sweep benchmark, against the real MariaDB/MySQL server and Redis of the config.
 * Creates N tenants (through the normal path), gives each some final messages and every tenth one a few stale QUEUED
 * rows with no job, then times, side by side in one run:
 *   - the reconciler's sweep (100 tenants per UNION ALL query over each server's admin connection), first when it
 *     enqueues the stale rows, then again when their jobs are alive (a sweep's steady-state cost);
 *   - the baseline: the same search as one query per tenant over the same admin connection.
 * Prints the table and rewrites its section of docs/benchmarks.md. Everything it creates is dropped at the end.
 *
 *   npm run bench:reconciler [-- --n 1000]      (or BENCH_TENANTS=1000; default 1000)
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { QueryTypes } from 'sequelize';
import { createDeps } from '../src/deps.js';
import { createReconciler } from '../src/messages/domain/reconciler.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import { isOperational } from '../src/orgs/domain/org.js';
import { quoteIdentifier } from '../src/platform/db/identifiers.js';
import {
  closeAndCleanUp,
  commandLine,
  describeMachine,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  runBenchFile,
  stopOnCtrlC,
  throwIfInterrupted,
  withRedis,
  writeDocSection,
} from './bench-lib.js';

const FINAL_ROWS_PER_TENANT = 20;
const STALE_ROWS = 3;
const STALE_EVERY = 10;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { n: { type: 'string' } } });
  const n = positiveInt(values.n ?? process.env.BENCH_TENANTS ?? '1000', 'N');
  const run = `b${Date.now().toString(36)}`;
  const config = loadRunConfig(run, { MIGRATION_LOCK_WAIT_SEC: '30' });
  const deps = createDeps(config, { subscribe: false });
  stopOnCtrlC();
  const log = (line: string) => console.error(`[bench:reconciler] ${line}`);
  try {
    await prepareRun(config, deps, false);
    const started = performance.now();
    const orgs = await mapWithConcurrency(
      Array.from({ length: n }, (_, i) => i),
      4,
      async (i) => (await deps.orgs.create({ name: `${run}-r-${i}`, credits: 0 })).org,
    );
    log(`created ${n} tenants in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    throwIfInterrupted();

    const admin = await deps.servers.admin(orgs[0]!.dbServerId!);
    const tenants = orgs.filter(isOperational);
    await mapWithConcurrency(tenants, 8, async (o, i) => {
      const rows = Array.from({ length: FINAL_ROWS_PER_TENANT }, () => "('+15550000000', 'sms', 'x', 1, 'SENT', CURRENT_TIMESTAMP(3))");
      if (i % STALE_EVERY === 0)
        for (let k = 0; k < STALE_ROWS; k++) rows.push("('+15550000000', 'sms', 'x', 1, 'QUEUED', CURRENT_TIMESTAMP(3) - INTERVAL 1 HOUR)");
      await admin.query(
        `INSERT INTO ${quoteIdentifier(o.dbName)}.messages (\`to\`, channel, body, cost, status, updated_at) VALUES ${rows.join(',')}`,
      );
    });
    const expectedStale = Math.ceil(tenants.length / STALE_EVERY) * STALE_ROWS;
    throwIfInterrupted();

    const reconciler = createReconciler({
      repo: deps.repo,
      servers: deps.servers,
      queue: deps.deliveryQueue,
      redis: deps.redis,
      prefix: config.queuePrefix,
      afterMs: 60_000,
      intervalMs: 60_000,
      logger: deps.logger,
    });
    const first = await reconciler.sweep();
    const second = await reconciler.sweep();
    if (first.stale !== expectedStale || first.requeued !== expectedStale)
      throw new Error(`first sweep: ${JSON.stringify(first)}, expected ${expectedStale}`);
    if (second.requeued !== 0) throw new Error(`second sweep requeued ${second.requeued}`);

    // Baseline: the same search, one query per tenant.
    const cutoff = new Date(Date.now() - 60_000);
    const t0 = performance.now();
    let found = 0;
    for (const o of tenants) {
      const rows = await admin.query(
        `SELECT id FROM ${quoteIdentifier(o.dbName)}.messages WHERE status IN ('QUEUED', 'SENDING') AND updated_at < :cutoff LIMIT 1000`,
        { replacements: { cutoff }, type: QueryTypes.SELECT },
      );
      found += rows.length;
    }
    const perTenantMs = performance.now() - t0;
    if (found !== expectedStale) throw new Error(`baseline found ${found}, expected ${expectedStale}`);

    const table = markdownTable(
      ['sweep', 'tenants', 'stale rows found', 'enqueued', 'time (ms)', 'per tenant (ms)', 'time ÷ baseline (below 1 is faster)'],
      'lrrrrrr',
      [
        [
          'reconciler, first sweep (enqueues)',
          first.tenants,
          first.stale,
          first.requeued,
          first.ms,
          (first.ms / n).toFixed(3),
          `${(first.ms / perTenantMs).toFixed(2)}×`,
        ],
        [
          'reconciler, next sweep (jobs alive)',
          second.tenants,
          second.stale,
          second.requeued,
          second.ms,
          (second.ms / n).toFixed(3),
          `${(second.ms / perTenantMs).toFixed(2)}×`,
        ],
        ['baseline: one query per tenant (search only)', n, found, '-', perTenantMs.toFixed(0), (perTenantMs / n).toFixed(3), '1.00×'],
      ],
    );
    console.log(table);
    const machine = await withRedis(config.redisUrl, (client) =>
      describeMachine(admin, { client, sharing: 'database, Redis and the benchmark all on this machine' }),
    );
    const file = await writeDocSection('reconciler', '## Outbox reconciler sweep', [
      `Measured ${new Date().toISOString().slice(0, 10)} with \`${commandLine('bench:reconciler', process.env.BENCH_TENANTS ? ['BENCH_TENANTS'] : [])}\` (N = ${n}).`,
      '',
      `- Machine: ${machine}.`,
      `- Data: ${n} tenants created through \`orgs.create\`, each with ${FINAL_ROWS_PER_TENANT} \`SENT\` messages; every ${STALE_EVERY}th tenant also has ${STALE_ROWS} \`QUEUED\` messages last changed an hour ago and no job (${expectedStale} in all), as an API killed between the insert and the enqueue leaves them.`,
      "- **reconciler**: `createReconciler(...).sweep()` with `RECONCILE_AFTER_MS=60000`: the Redis lock, every operational org from the shared DB, 100 tenants per `UNION ALL` query over the server's admin connection (index `messages_status_updated_at`), and `ensureDeliveryJob` for each stale row. The first sweep enqueues them; the next finds them again and leaves them alone (their jobs are alive): the steady-state cost of a sweep.",
      '- **baseline**: the same search (no enqueueing) as one query per tenant over the same connection, in the same run.',
      '',
      table,
    ]);
    log(`wrote ${file}`);
  } finally {
    await closeAndCleanUp(deps, config, run, log, true);
  }
}

runBenchFile(main);
