/**
 * What the benchmarks in bench/ share: the run's config, Ctrl-C handling, cleaning up after a run, the machine line,
 * the command line, the docs/benchmarks.md section, the Markdown table, and autocannon in a worker thread.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker as Thread, workerData } from 'node:worker_threads';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { QueryTypes, type Sequelize } from 'sequelize';
import { loadConfig, type Config } from '../config/config.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import { prepareSharedDb } from '../src/platform/db/shared-db.js';
import type { Deps } from '../src/deps.js';

const DOC = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));
const SAFE_NAME = /^[A-Za-z0-9_]+$/;

let interrupted = false;

/** From now on Ctrl-C only marks the run interrupted (see throwIfInterrupted), so that it stops between steps and still cleans up. */
export function stopOnCtrlC(): void {
  process.once('SIGINT', () => {
    interrupted = true;
    console.error('interrupted: stopping after the current step, then cleaning up');
  });
}

/** Whether Ctrl-C was pressed since stopOnCtrlC. */
export function wasInterrupted(): boolean {
  return interrupted;
}

/** Throws once Ctrl-C was pressed, so that the run stops between steps and still cleans up. */
export function throwIfInterrupted(): void {
  if (interrupted) throw new Error('interrupted');
}

/** A positive integer from a string, or a clear error naming where it came from. */
export function positiveInt(raw: string, what: string): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** A tunable from the environment, else its entry in `defaults`. */
export function tunable(name: string, defaults: Readonly<Record<string, string | undefined>>): string {
  return process.env[name] ?? defaults[name]!;
}

/** The run's config: `defaults` (those set) under the environment, then the run's own shared DB, tenant DB prefix, queue prefix, silent logs, and `overrides`. */
export function loadRunConfig(
  run: string,
  overrides: Readonly<Record<string, string>>,
  defaults: Readonly<Record<string, string | undefined>> = {},
): Config {
  const set = Object.fromEntries(Object.entries(defaults).filter((e): e is [string, string] => e[1] !== undefined));
  return loadConfig({
    ...set,
    ...process.env,
    DB_NAME: `${run}_shared`,
    TENANT_DB_PREFIX: `${run}_t`,
    QUEUE_PREFIX: run,
    LOG_LEVEL: 'silent',
    ...overrides,
  });
}

/** Creates and migrates the run's shared database and registers the default database server; with `orgEvents`, also waits for the org-events subscription. */
export async function prepareRun(config: Config, deps: Deps, orgEvents: boolean): Promise<void> {
  await prepareSharedDb(config, deps.sharedDb);
  await deps.servers.ensureDefault();
  if (orgEvents && !(await deps.events.ready())) throw new Error('could not subscribe to org events on Redis');
}

/** Throws unless `name` is a plain name, safe to put in SQL. */
export function safeSqlName(name: string): string {
  if (!SAFE_NAME.test(name)) throw new Error(`refusing unsafe name ${JSON.stringify(name)}`);
  return name;
}

/** `LIKE` pattern matching names that start with `prefix`. */
function likeStartsWith(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
}

/** Drops every database and MySQL user of this run, over an admin connection of its own (works whatever state deps is in). */
async function dropRunDatabases(config: Config, run: string): Promise<{ databases: number; users: number }> {
  const admin = createSequelize({ ...config.db, database: undefined, poolMax: 1 });
  try {
    const dbs = await admin.query<Record<string, string>>('SHOW DATABASES LIKE :pattern', {
      replacements: { pattern: likeStartsWith(`${run}_`) },
      type: QueryTypes.SELECT,
    });
    for (const row of dbs) await admin.query(`DROP DATABASE IF EXISTS \`${safeSqlName(Object.values(row)[0]!)}\``);
    const users = await admin.query<{ User: string; Host: string }>('SELECT User, Host FROM mysql.user WHERE User LIKE :pattern', {
      replacements: { pattern: likeStartsWith(config.tenant.dbPrefix) },
      type: QueryTypes.SELECT,
    });
    for (const u of users) await admin.query(`DROP USER IF EXISTS ${admin.escape(safeSqlName(u.User))}@${admin.escape(u.Host)}`);
    return { databases: dbs.length, users: users.length };
  } finally {
    await admin.close();
  }
}

/** Runs `fn` with a Redis connection of its own, closed afterwards. */
export async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

/** Deletes every Redis key of this run (`<run>:*`: queues, org events, the limiter's counters); returns how many. */
function deleteRunRedisKeys(config: Config, run: string): Promise<number> {
  return withRedis(config.redisUrl, async (redis) => {
    let deleted = 0;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${run}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) deleted += await redis.del(...keys);
    } while (cursor !== '0');
    return deleted;
  });
}

/** Closes deps, then removes the run's databases and MySQL users (and, with `redisKeys`, its Redis keys) and logs what it removed. */
export async function closeAndCleanUp(
  deps: Pick<Deps, 'close'>,
  config: Config,
  run: string,
  log: (line: string) => void,
  redisKeys: boolean,
): Promise<void> {
  await deps.close().catch((err: unknown) => log(`closing deps failed: ${String(err)}`));
  const dropped = await dropRunDatabases(config, run);
  if (!redisKeys) {
    log(`cleaned up ${dropped.databases} databases and ${dropped.users} users of run ${run}`);
    return;
  }
  const keys = await deleteRunRedisKeys(config, run);
  log(`cleaned up ${dropped.databases} databases, ${dropped.users} users and ${keys} Redis keys of run ${run}`);
}

/** One line describing the machine and the database server; with `redis`, also its version and `sharing` (what else runs on this machine). */
export async function describeMachine(db: Sequelize, redis?: { client: Redis; sharing: string }): Promise<string> {
  const [row] = await db.query<{ version: string }>('SELECT VERSION() AS version', { type: QueryTypes.SELECT });
  const redisPart = redis
    ? `; Redis ${/redis_version:(\S+)/.exec(await redis.client.info('server'))?.[1] ?? 'unknown'}; ${redis.sharing}`
    : '';
  const cpus = os.cpus();
  return (
    `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ` +
    `${os.type()} ${os.release()} ${os.arch()}; Node ${process.version}; database server ${row?.version ?? 'unknown'}${redisPart}`
  );
}

/** The command line of this run, as typed: the variables of `vars` that are set, then `npm run <script>` or the node command. */
export function commandLine(script: string, vars: readonly string[]): string {
  const env = vars
    .filter((k) => process.env[k] !== undefined)
    .map((k) => `${k}=${process.env[k]} `)
    .join('');
  const args = process.argv.slice(2);
  if (process.env.npm_lifecycle_event === script) return `${env}npm run ${script}${args.length ? ` -- ${args.join(' ')}` : ''}`;
  return `${env}node ${[...process.execArgv, path.relative(process.cwd(), process.argv[1]!), ...args].join(' ')}`;
}

/** Puts `lines` between the `bench:<name>` markers of docs/benchmarks.md (adding the file, or `heading` and the section, when missing); returns the file's path. */
export async function writeDocSection(name: string, heading: string, lines: readonly string[]): Promise<string> {
  const startMarker = `<!-- bench:${name}:start -->`;
  const endMarker = `<!-- bench:${name}:end -->`;
  const block = [startMarker, ...lines, endMarker].join('\n');
  const current = existsSync(DOC)
    ? await readFile(DOC, 'utf8')
    : '# Benchmarks\n\nMeasured against real MariaDB/MySQL and Redis servers by the scripts in `bench/`. ' +
      'Each script rewrites only the text between its own marker comments.\n';
  const start = current.indexOf(startMarker);
  const end = current.indexOf(endMarker);
  const next =
    start >= 0 && end > start
      ? current.slice(0, start) + block + current.slice(end + endMarker.length)
      : `${current.trimEnd()}\n\n${heading}\n\n${block}\n`;
  await writeFile(DOC, next);
  return path.relative(process.cwd(), DOC);
}

/** A Markdown table: the `head` row, the alignment row (`align`: one of l, r, c per column), then `rows`. */
export function markdownTable(head: readonly string[], align: string, rows: readonly (readonly (string | number)[])[]): string {
  const rule = { l: '---', r: '---:', c: ':---:' } as Record<string, string>;
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(head), `|${[...align].map((a) => rule[a]).join('|')}|`, ...rows.map(line)].join('\n');
}

/** Milliseconds with two decimals below 10, else one. */
export function formatMs(v: number): string {
  return v.toFixed(v < 10 ? 2 : 1);
}

/** The value at quantile q (0..1) of sorted numbers. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** One autocannon run, as a plain object (it crosses the thread boundary). */
export interface CannonResult {
  seconds: number;
  responses: number;
  statusCodes: Record<string, number>;
  errors: number;
  timeouts: number;
  p50: number;
  p99: number;
}

/** Runs autocannon for `amount` requests or `duration` seconds, each connection cycling through `requests` from its own starting point. */
export async function runAutocannon(
  opts: { url: string; connections: number; requests: autocannon.Request[] } & ({ amount: number } | { duration: number }),
): Promise<CannonResult> {
  const { url, connections, requests, ...limit } = opts;
  let clients = 0;
  // Statuses and latencies are taken from the response events: in a worker thread autocannon answers its raw,
  // unaggregated result (encoded histograms); its error and timeout counters are plain numbers either way.
  const statusCodes: Record<string, number> = {};
  const latencies: number[] = [];
  // Timed here, to the last response: autocannon's own duration only ends at its next 1-second sampling tick.
  const started = performance.now();
  let lastResponse = started;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url,
        connections,
        ...limit,
        timeout: 10,
        requests,
        // Every connection walks through all tenants, each from its own starting point, so that the tenants share the load
        // evenly at every moment instead of all connections hitting one tenant after the other in step.
        setupClient(client) {
          const k = clients++ % requests.length;
          client.setRequests([...requests.slice(k), ...requests.slice(0, k)]);
        },
      },
      (err: unknown, res) => (err ? reject(err instanceof Error ? err : new Error(JSON.stringify(err))) : resolve(res)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
      latencies.push(responseTime);
      lastResponse = performance.now();
    });
  });
  latencies.sort((a, b) => a - b);
  return {
    seconds: (lastResponse - started) / 1000,
    responses: latencies.length,
    statusCodes,
    errors: result.errors,
    timeouts: result.timeouts,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
  };
}

/** Runs the load generator in a thread of its own (the bench file at `moduleUrl`, see runBenchFile), so that it does not share the API's event loop. */
export function runLoadThread<Spec, Result>(moduleUrl: string, spec: Spec): Promise<Result> {
  return new Promise((resolve, reject) => {
    // tsx registers its loader in the main thread only (on Node 20 a worker does not inherit it): register it here, then load the file.
    const code = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(moduleUrl)}); });`;
    const thread = new Thread(code, { eval: true, workerData: spec });
    thread.once('message', (msg: { result?: Result; error?: string }) => {
      void thread.terminate();
      if (msg.result) resolve(msg.result);
      else reject(new Error(`load generator: ${msg.error}`));
    });
    thread.once('error', reject);
    thread.once('exit', (code) => reject(new Error(`load generator exited with code ${code} before answering`)));
  });
}

/** A bench file's entry point: in the main thread runs `main` (exit code 1 on failure); in a runLoadThread thread answers `loadThread(spec)`. */
export function runBenchFile<Spec, Result>(main: () => Promise<void>, loadThread?: (spec: Spec) => Promise<Result>): void {
  if (isMainThread) {
    main().catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
  } else if (loadThread) {
    loadThread(workerData as Spec).then(
      (result) => parentPort!.postMessage({ result }),
      (err: unknown) => parentPort!.postMessage({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  }
}

/** A sampler of Zipf(s) over n items (0 = the most popular) by inverse CDF, from a seeded xorshift generator: the same draws on every run. */
export function zipfSampler(n: number, s = 1.0, seed = 42): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 1; k <= n; k++) cdf[k - 1] = total += 1 / k ** s;
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
  return () => {
    const u = next() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** Zipf(s) over n items by inverse CDF, from a seeded xorshift generator: the same sequence on every run. */
export function zipfSequence(n: number, length: number, s = 1.0, seed = 42): number[] {
  const draw = zipfSampler(n, s, seed);
  return Array.from({ length }, draw);
}

/** A node process (`args` after node itself, run in `cwd`) that prints `listening on <url>`; resolves once it does. */
export async function startServerProcess(
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`${args.at(-1)} exited early with ${code}: ${out}`)));
  });
  // From here its output (access lines at LOG_LEVEL=info) is drained and dropped, as a log shipper would take it: kept
  // and searched, it made this process the server's bottleneck (a full pipe blocks the server's writes).
  child.stdout.removeAllListeners('data');
  child.stdout.resume();
  return { child, url };
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 1/100 s); with `tid`, one of its
 * threads only (the main thread's id is the process's).
 */
export async function cpuOf(pid: number, tid?: number): Promise<number> {
  const stat = await readFile(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100;
}

/** The database server's process id when it runs on this machine (its pid file readable), else undefined. */
export async function databasePid(root: Sequelize): Promise<number | undefined> {
  const [row] = await root.query<{ f: string | null }>('SELECT @@pid_file AS f', { type: QueryTypes.SELECT });
  const pid = Number((row?.f ? await readFile(row.f, 'utf8').catch(() => '') : '').trim());
  return localPid(pid);
}

/** The Redis server's process id when it runs on this machine, else undefined. */
export async function redisPid(redis: Redis): Promise<number | undefined> {
  const info = await redis.info('server');
  return localPid(Number(/^process_id:(\d+)/m.exec(info)?.[1]));
}

const localPid = (pid: number) => (Number.isSafeInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined);
