/**
 * The fleet: FLEET_TENANTS (10,000) tenants created through the normal path (`orgs.create`: database, MySQL user,
 * migrations, first key), then an API process of its own (`src/main.ts --role api`, default settings unless the
 * environment says otherwise) and, side by side in one run on that one server and process:
 *   1. GET /messages of one tenant;
 *   2. GET /messages over the whole fleet, EVERY request's tenant drawn afresh from Zipf(1.0) over all the tenants
 *      (autocannon's setupRequest over a seeded PRNG: the same draws on every run);
 * after a warm-up pass that sends one request for every tenant (so the fleet is warm: RSS is that of N warm tenants),
 * in the order 1 2 2 1 (FLEET_ROUNDS times), each the mean of its runs. Reported per scenario: distinct tenants reached, instance-cache
 * misses and evictions, connection switches per request (deltas of the API's /metrics), peak tenant connections
 * (information_schema.PROCESSLIST), peak `Threads_connected` (SHOW STATUS), and the API process's peak RSS (/proc).
 * Then the same two scenarios against the bare baseline, bench/bare-multiplexer.ts (bare Koa + mysql2 connections
 * multiplexed over the same tenants' MySQL users, the same budget, a plain LRU victim, nothing else), in
 * the same order: its fleet-to-one ratio is what switching alone costs on this machine.
 * Then, with FLEET_MIGRATE=1, one migration over the whole fleet through the CLI.
 *
 *   npm run bench:fleet
 *   FLEET_TENANTS=1000 FLEET_KEEP=1 npm run bench:fleet       # keeps the tenants; prints FLEET_RUN=<run> to reuse them
 *   FLEET_RUN=fl1a2b3c FLEET_TENANTS=1000 npm run bench:fleet  # reuses them (FLEET_KEEP=1 again keeps them once more)
 *   FLEET_CPU_PROF=/tmp/prof npm run bench:fleet               # the API runs with --cpu-prof into that directory;
 *   node --import tsx bench/profile-windows.ts /tmp/prof 40 one fleet   # then: its CPU per request in each run, and the difference
 *
 * Tunables (defaults in brackets): FLEET_TENANTS [10000], BENCH_CONNECTIONS [20], BENCH_SECONDS [6],
 * FLEET_CREATE_CONCURRENCY [8], FLEET_ROUNDS [2], FLEET_MIGRATE [0], MIGRATE_CONCURRENCY [8], FLEET_KEEP [0], FLEET_RUN [new run],
 * FLEET_BARE_ROLES [0] (1: the bare multiplexer a third time, switching with MariaDB roles: what roles would cost).
 * Without FLEET_KEEP everything it creates is removed at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type autocannon from 'autocannon';
import { QueryTypes, type Sequelize } from 'sequelize';
import { createDeps } from '../src/deps.js';
import type { ProfileWindow } from './profile-windows.js';
import { createSequelize } from '../src/platform/db/sequelize.js';
import { mapWithConcurrency } from '../src/platform/lib/concurrency.js';
import {
  closeAndCleanUp,
  commandLine,
  cpuOf,
  databasePid,
  describeMachine,
  formatMs,
  loadRunConfig,
  markdownTable,
  positiveInt,
  prepareRun,
  runAutocannon,
  runBenchFile,
  runLoadThread,
  startServerProcess,
  stopOnCtrlC,
  throwIfInterrupted,
  tunable,
  writeDocSection,
  zipfSampler,
  type CannonResult,
} from './bench-lib.js';

const DEFAULTS = {
  FLEET_TENANTS: '10000',
  BENCH_CONNECTIONS: '20',
  BENCH_SECONDS: '6',
  FLEET_CREATE_CONCURRENCY: '8',
  FLEET_MIGRATE: '0',
  FLEET_BARE_ROLES: '0',
  MIGRATE_CONCURRENCY: '8',
  FLEET_ROUNDS: '2',
  FLEET_KEEP: '0',
  FLEET_RUN: undefined,
  FLEET_CPU_PROF: undefined,
} as const;
const int = (name: keyof typeof DEFAULTS) => positiveInt(tunable(name, DEFAULTS), name);
const flag = (name: keyof typeof DEFAULTS) => tunable(name, DEFAULTS) === '1';
const TENANTS = int('FLEET_TENANTS');
const CONNECTIONS = int('BENCH_CONNECTIONS');
const SECONDS = int('BENCH_SECONDS');
/** Rounds of the order one, fleet, fleet, one: on a shared machine more, shorter rounds weigh its load on both alike. */
const ROUNDS = int('FLEET_ROUNDS');
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Settings the API process gets from the environment when set (else its defaults), stated in the report. */
const TENANT_SETTINGS = [
  'TENANT_CACHE_MAX',
  'TENANT_CONNECTIONS_MAX',
  'TENANT_POOL_MAX',
  'TENANT_SWITCH_WAIT_MS',
  'ORG_CACHE_TTL_MS',
  'ORG_CACHE_MAX_AGE_MS',
] as const;
/** The API's own /metrics counters read around each run. */
const COUNTERS = {
  misses: 'tenant_pool_cache_misses_total',
  evictions: 'tenant_pool_cache_evictions_total',
  switches: 'tenant_db_connection_switches_total',
  behind: 'tenant_db_connection_switches_behind_total',
  orgMisses: 'org_cache_misses_total',
} as const;
type Counters = Record<keyof typeof COUNTERS, number>;

interface Tenant {
  id: number;
  apiKey: string;
}
interface LoadSpec {
  url: string;
  tenants: Tenant[];
  seconds: number;
  /** 'zipf': each request's tenant drawn afresh from Zipf(1.0) over `tenants`; 'each': every tenant once, in order. */
  draw: 'zipf' | 'each';
  seed: number;
}
type LoadResult = CannonResult & { distinct: number };

/** The load thread: GET /messages, each request's tenant drawn when the request is built. */
async function loadThread(spec: LoadSpec): Promise<LoadResult> {
  const { tenants } = spec;
  const zipf = zipfSampler(tenants.length, 1.0, spec.seed);
  let cursor = 0;
  const pick = spec.draw === 'zipf' ? zipf : () => cursor++ % tenants.length;
  const reached = new Set<number>();
  const request: autocannon.Request = {
    method: 'GET',
    path: '/messages',
    setupRequest(req) {
      const t = tenants[pick()]!;
      reached.add(t.id);
      return { ...req, headers: { 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}` } };
    },
  };
  const limit = spec.draw === 'each' ? { amount: tenants.length } : { duration: spec.seconds };
  const result = await runAutocannon({ url: spec.url, connections: CONNECTIONS, requests: [request], ...limit });
  return { ...result, distinct: reached.size };
}

/** Runs bin/tenant with the run's environment; answers its exit code, stdout and the seconds it took. */
function tenantCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(`${ROOT}bin/tenant`, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, seconds: (performance.now() - started) / 1000 }));
  });
}

/** `src/main.ts --role api` as a process of its own (its RSS is its own); resolves with its URL once it listens. */
function startApiProcess(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const prof = tunable('FLEET_CPU_PROF', DEFAULTS);
  return startServerProcess(
    [
      '--import',
      'tsx',
      ...(prof ? ['--cpu-prof', '--cpu-prof-interval', '250', '--cpu-prof-dir', prof] : []),
      'src/main.ts',
      '--role',
      'api',
    ],
    env,
    ROOT,
  );
}

async function stopApiProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function readCounters(url: string, token: string): Promise<Counters> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  const text = await res.text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return Object.fromEntries(Object.entries(COUNTERS).map(([k, name]) => [k, value(name)])) as Counters;
}

/** The bare multiplexer's counters, in the API's terms (it has no instance or org cache). */
async function readBareCounters(url: string): Promise<Counters> {
  const res = await fetch(`${url}/stats`);
  const stats = (await res.json()) as { switches: number };
  return { misses: 0, evictions: 0, orgMisses: 0, switches: stats.switches, behind: 0 };
}

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** The pid of the database server when it runs on this machine (its pid file, as it states it), for its CPU time. */
async function count(root: Sequelize, sql: string, replacements: Record<string, unknown> = {}): Promise<number> {
  const [r] = await root.query<Record<string, unknown>>(sql, { replacements, type: QueryTypes.SELECT });
  return Number(Object.values(r ?? {}).at(-1) ?? 0);
}

const chunks = <T>(all: readonly T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(all.length / size) }, (_, i) => all.slice(i * size, (i + 1) * size));

const stateFile = (run: string) => path.join(os.tmpdir(), `bench-fleet-${run}.json`);

async function main(): Promise<void> {
  stopOnCtrlC();
  const reuse = tunable('FLEET_RUN', DEFAULTS);
  const keep = flag('FLEET_KEEP');
  const run = reuse ?? `fl${randomBytes(3).toString('hex')}`;
  const overrides = { RATE_LIMIT_POINTS: '100000000', AUTH_FAILURE_LIMIT: '100000000' };
  const config = loadRunConfig(run, overrides);
  const runEnv = { DB_NAME: config.db.name, TENANT_DB_PREFIX: config.tenant.dbPrefix, QUEUE_PREFIX: run, LOG_LEVEL: 'error', ...overrides };
  const deps = createDeps(config, { role: 'api' });
  const log = (line: string) => console.error(line);
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 2 });
  let api: { child: ChildProcess; url: string } | undefined;
  let bare: { child: ChildProcess; url: string } | undefined;
  const bareFile = path.join(os.tmpdir(), `bench-fleet-${run}-logins.json`);
  /** FLEET_BARE_ROLES: the roles made (dropped at the end, kept fleet or not). */
  const rolesMade: string[] = [];
  let rolesSeconds: number | undefined;
  let routerMade: string | undefined;
  try {
    await prepareRun(config, deps, false);
    let tenants: Tenant[] = [];
    let createSeconds: number | undefined;
    if (reuse && existsSync(stateFile(run))) tenants = JSON.parse(await readFile(stateFile(run), 'utf8')) as Tenant[];
    if (tenants.length < TENANTS) {
      log(`creating ${TENANTS - tenants.length} tenants…`);
      const createStarted = performance.now();
      let made = 0;
      const more = await mapWithConcurrency(
        Array.from({ length: TENANTS - tenants.length }, (_, i) => `${run}-${tenants.length + i + 1}`),
        int('FLEET_CREATE_CONCURRENCY'),
        async (name) => {
          throwIfInterrupted();
          const { org, apiKey } = await deps.orgs.create({ name, credits: 100 });
          await root.query(
            `INSERT INTO \`${org.dbName!}\`.messages (\`to\`, channel, body, cost, status) VALUES ('+15551234567', 'sms', 'a', 1, 'SENT'), ('+15551234567', 'sms', 'b', 1, 'SENT')`,
          );
          if (++made % 1000 === 0) log(`  ${made} tenants`);
          return { id: org.id, apiKey: apiKey! };
        },
      );
      createSeconds = (performance.now() - createStarted) / 1000;
      tenants = [...tenants, ...more];
      if (keep) await writeFile(stateFile(run), JSON.stringify(tenants), { mode: 0o600 });
    }
    tenants = tenants.slice(0, TENANTS);
    await deps.close();

    api = await startApiProcess(runEnv);
    const token = config.adminToken;
    /** The server under load: the API, then the bare multiplexer. */
    let target = { url: api.url, pid: api.child.pid!, counters: (u: string) => readCounters(u, token) };
    const like = `${config.tenant.dbPrefix.replace(/_/g, '\\_')}%`;
    const peak = { tenantConnections: 0, threadsConnected: 0, rss: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak.tenantConnections = Math.max(
          peak.tenantConnections,
          await count(root, 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER LIKE :like', { like }),
        );
        peak.threadsConnected = Math.max(peak.threadsConnected, await count(root, "SHOW GLOBAL STATUS LIKE 'Threads_connected'"));
        peak.rss = Math.max(peak.rss, await rssOf(target.pid));
        await new Promise((r) => setTimeout(r, 100));
      }
    })().catch(() => undefined); // ends with the run, or when the run fails and closes `root` under it
    const takePeak = () => {
      const p = { ...peak };
      Object.assign(peak, { tenantConnections: 0, threadsConnected: 0, rss: 0 });
      return p;
    };

    const dbPid = await databasePid(root);
    interface Measured {
      result: LoadResult;
      delta: Counters;
      peak: typeof peak;
      /** CPU seconds of the API process and of the database server (which other work on it shares) during the run. */
      apiCpu: number;
      dbCpu: number;
    }
    /** With FLEET_CPU_PROF, each run's window on the profile's clock, for `bench/profile-windows.ts`. */
    const windows: ProfileWindow[] = [];
    const micros = () => Number(process.hrtime.bigint() / 1000n);
    const measure = async (spec: Omit<LoadSpec, 'url'>, name = 'warm-up'): Promise<Measured> => {
      const { url, pid } = target;
      const before = await target.counters(url);
      takePeak();
      const [api0, db0] = [await cpuOf(pid), dbPid ? await cpuOf(dbPid) : 0];
      const start = micros();
      const result = await runLoadThread<LoadSpec, LoadResult>(import.meta.url, { url, ...spec });
      windows.push({ name, start, end: micros(), responses: result.responses });
      const [api1, db1] = [await cpuOf(pid), dbPid ? await cpuOf(dbPid) : 0];
      const after = await target.counters(url);
      const delta = Object.fromEntries(Object.keys(COUNTERS).map((k) => [k, after[k as keyof Counters] - before[k as keyof Counters]]));
      if ((result.statusCodes[200] ?? 0) !== result.responses)
        throw new Error(`not every answer was 200: ${JSON.stringify(result.statusCodes)}`);
      return { result, delta: delta as Counters, peak: takePeak(), apiCpu: api1 - api0, dbCpu: db1 - db0 };
    };

    const coldRss = await rssOf(target.pid);
    log(`warm-up: one request for each of the ${tenants.length} tenants…`);
    const warm = await measure({ tenants, seconds: 0, draw: 'each', seed: 1 });
    const warmRss = await rssOf(target.pid);
    log(
      `  ${warm.result.distinct} tenants, ${(warm.result.responses / warm.result.seconds).toFixed(0)} req/s, RSS ${(warmRss / 2 ** 20).toFixed(0)} MiB`,
    );

    const results = new Map<string, Measured[]>();
    let round = 0;
    /** FLEET_ROUNDS rounds of one, fleet, fleet, one against the target, recorded under the two names given. */
    const rounds = async (one: string, fleet: string) => {
      for (const name of Array.from({ length: ROUNDS }, () => [one, fleet, fleet, one]).flat()) {
        throwIfInterrupted();
        const set = name === one ? [tenants[0]!] : tenants;
        const url = target.url;
        await runLoadThread<LoadSpec, LoadResult>(import.meta.url, { url, tenants: set, seconds: 1, draw: 'zipf', seed: 1000 + round });
        const m = await measure({ tenants: set, seconds: SECONDS, draw: 'zipf', seed: ++round }, name);
        log(
          `${name}: ${(m.result.responses / m.result.seconds).toFixed(0)} req/s, p99 ${formatMs(m.result.p99)} ms, ${m.result.distinct} tenants, ` +
            `${m.delta.misses} misses, ${m.delta.orgMisses} org-cache misses, ${m.delta.evictions} evictions, ${(m.delta.switches / m.result.responses).toFixed(2)} switches/request (${(m.delta.behind / m.result.responses).toFixed(2)} behind a statement), ` +
            `CPU ${((1e6 * m.apiCpu) / m.result.responses).toFixed(0)} µs/req, DB CPU ${((1e6 * m.dbCpu) / m.result.responses).toFixed(0)} µs/req, threads ${m.peak.threadsConnected}, RSS ${(m.peak.rss / 2 ** 20).toFixed(0)} MiB (load ${os.loadavg()[0]!.toFixed(2)})`,
        );
        results.set(name, [...(results.get(name) ?? []), m]);
      }
    };
    await rounds('one', 'fleet');
    const finalRss = await rssOf(target.pid);
    await stopApiProcess(api.child);
    api = undefined;
    const prof = tunable('FLEET_CPU_PROF', DEFAULTS);
    if (prof) await writeFile(path.join(prof, 'windows.json'), JSON.stringify(windows));

    // The bare baseline over the same tenants, with the same connection budget.
    const logins = await root.query<{ id: number; user: string; password: string; database: string }>(
      `SELECT id, db_user AS user, db_password_enc AS password, db_name AS \`database\` FROM \`${config.db.name}\`.orgs WHERE db_user IS NOT NULL`,
      { type: QueryTypes.SELECT },
    );
    for (const l of logins) l.password = deps.secrets.decrypt(l.password);
    await writeFile(bareFile, JSON.stringify({ host: config.db.host, port: config.db.port, tenants: logins }), { mode: 0o600 });
    bare = await startServerProcess(
      ['--import', 'tsx', 'bench/bare-multiplexer.ts', bareFile, String(config.tenant.connectionsMax)],
      {},
      ROOT,
    );
    target = { url: bare.url, pid: bare.child.pid!, counters: readBareCounters };
    await rounds('bareOne', 'bareFleet');
    await stopApiProcess(bare.child);
    bare = undefined;

    // With FLEET_BARE_ROLES=1, the bare multiplexer again, switching with MariaDB roles (issue 19, item 2: measured,
    // not used by the API): a role per tenant with SELECT on its database, all granted to one router login.
    if (flag('FLEET_BARE_ROLES')) {
      const started = performance.now();
      const routerLogin = { user: `${config.tenant.dbPrefix}router`, password: randomBytes(12).toString('hex') };
      routerMade = routerLogin.user;
      await root.query(`CREATE OR REPLACE USER \`${routerLogin.user}\`@'%' IDENTIFIED BY '${routerLogin.password}'`);
      const withRoles = await mapWithConcurrency(logins, 4, async (l) => {
        const role = `r_${l.database}`;
        rolesMade.push(role);
        await root.query(`CREATE ROLE \`${role}\``);
        await root.query(`GRANT SELECT ON \`${l.database}\`.* TO \`${role}\``);
        // MariaDB grants one role per statement, and each costs time in the roles the router holds already.
        await root.query(`GRANT \`${role}\` TO \`${routerLogin.user}\`@'%'`);
        return { ...l, role };
      });
      rolesSeconds = (performance.now() - started) / 1000;
      log(`made ${withRoles.length} roles in ${rolesSeconds.toFixed(0)} s`);
      await writeFile(bareFile, JSON.stringify({ host: config.db.host, port: config.db.port, tenants: withRoles, router: routerLogin }), {
        mode: 0o600,
      });
      bare = await startServerProcess(
        ['--import', 'tsx', 'bench/bare-multiplexer.ts', bareFile, String(config.tenant.connectionsMax), 'role'],
        {},
        ROOT,
      );
      target = { url: bare.url, pid: bare.child.pid!, counters: readBareCounters };
      await rounds('roleOne', 'roleFleet');
      await stopApiProcess(bare.child);
      bare = undefined;
    }
    sampling = false;
    await sampler;

    let migrateLine = '';
    if (flag('FLEET_MIGRATE')) {
      log('rolling the newest tenant migration back on every tenant, then migrating the fleet…');
      const concurrency = tunable('MIGRATE_CONCURRENCY', DEFAULTS);
      const back = await tenantCli(['rollback', '--step', '1', '--force', '--concurrency', concurrency, '--json'], runEnv);
      if (back.code !== 0) throw new Error(`rollback exited ${back.code}`);
      const migrate = await tenantCli(['migrate', '--concurrency', concurrency, '--skip-failing', '--json'], runEnv);
      // The result is the last line (one JSON line per event of the rollout comes first).
      const summary = JSON.parse(migrate.stdout.trimEnd().split('\n').at(-1)!) as { results?: Array<{ result: string }> };
      const ok = (summary.results ?? []).filter((t) => t.result === 'ok').length;
      if (migrate.code !== 0 || ok < TENANTS) throw new Error(`migrate exited ${migrate.code} with ${ok} of ${TENANTS} tenants ok`);
      migrateLine =
        `One migration over the fleet: \`bin/tenant rollback --step 1 --force\` took ${back.seconds.toFixed(0)} s, then ` +
        `\`bin/tenant migrate --concurrency ${concurrency}\` applied it to ${ok} tenants in ${migrate.seconds.toFixed(0)} s.`;
    }

    const all = (name: string) => results.get(name)!;
    const rate = (name: string) => all(name).reduce((s, m) => s + m.result.responses / m.result.seconds, 0) / all(name).length;
    const worst = (name: string, k: 'p50' | 'p99') => Math.max(...all(name).map((m) => m.result[k]));
    const sum = (name: string, f: (m: Measured) => number) => all(name).reduce((s, m) => s + f(m), 0);
    const max = (name: string, f: (m: Measured) => number) => Math.max(...all(name).map(f));
    const row = (label: string, name: string, base: string) => [
      label,
      rate(name).toFixed(0),
      formatMs(worst(name, 'p50')),
      formatMs(worst(name, 'p99')),
      `${(rate(name) / rate(base)).toFixed(2)}×`,
      max(name, (m) => m.result.distinct),
      sum(name, (m) => m.delta.misses),
      sum(name, (m) => m.delta.orgMisses),
      sum(name, (m) => m.delta.evictions),
      `${(sum(name, (m) => m.delta.switches) / sum(name, (m) => m.result.responses)).toFixed(2)} (${(sum(name, (m) => m.delta.behind) / sum(name, (m) => m.result.responses)).toFixed(2)})`,
      ((1e6 * sum(name, (m) => m.apiCpu)) / sum(name, (m) => m.result.responses)).toFixed(0),
      dbPid ? ((1e6 * sum(name, (m) => m.dbCpu)) / sum(name, (m) => m.result.responses)).toFixed(0) : '',
      max(name, (m) => m.peak.tenantConnections),
      max(name, (m) => m.peak.threadsConnected),
      (max(name, (m) => m.peak.rss) / 2 ** 20).toFixed(0),
    ];
    const settings = TENANT_SETTINGS.map((k) => `\`${k}=${process.env[k] ?? 'default'}\``).join(', ');
    // The server's table caches decide whether a tenant's tables must be opened again (docs/operations.md: sizing).
    const [caches] = await root.query<{ open: number; definitions: number }>(
      'SELECT @@table_open_cache AS open, @@table_definition_cache AS definitions',
      { type: QueryTypes.SELECT },
    );
    const machine = await describeMachine(root);
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${machine}; load average ${os.loadavg()[0]!.toFixed(2)} at the end.`,
      `Command: \`${commandLine('bench:fleet', Object.keys(DEFAULTS))}\`.`,
      `${TENANTS} tenants` +
        (createSeconds === undefined
          ? ' (kept from an earlier run), '
          : ` created through \`orgs.create\` (database, MySQL user, migrations, first key) in ${createSeconds.toFixed(0)} s ` +
            `(${((TENANTS - 0) / createSeconds).toFixed(1)} tenants/s, ${tunable('FLEET_CREATE_CONCURRENCY', DEFAULTS)} at a time), `) +
        `2 messages each. The API is a process of its own (\`src/main.ts --role api\`); settings ${settings}; the database server's ` +
        `\`table_open_cache\` ${caches?.open}, \`table_definition_cache\` ${caches?.definitions}. ` +
        `Warm-up: one request for every tenant (${warm.result.distinct} tenants reached, ${warm.delta.misses} misses, API RSS ${(coldRss / 2 ** 20).toFixed(0)} MiB before it, ${(warmRss / 2 ** 20).toFixed(0)} MiB after it: ` +
        `${((warmRss - coldRss) / 1024 / tenants.length).toFixed(1)} KiB per warm tenant). ` +
        `Then ${CONNECTIONS} connections, ${SECONDS} s per run after 1 s of warm-up, order one, fleet, fleet, one (${ROUNDS} rounds); ` +
        `in the fleet runs every request's tenant is drawn afresh from Zipf(1.0) over all ${TENANTS} tenants (seeded PRNG). ` +
        `Then the same against the bare multiplexer (\`bench/bare-multiplexer.ts\`, a process of its own: bare Koa and mysql2 ` +
        `connections over the same tenants' MySQL users, the same budget of ${config.tenant.connectionsMax}, the least recently used idle session switched, ` +
        `and nothing else: no key, limit, deadline or session check); its ratio is what switching alone costs here.`,
      '',
      markdownTable(
        [
          'scenario',
          `req/s (mean of ${2 * ROUNDS})`,
          'p50 ms (worst)',
          'p99 ms (worst)',
          'ratio',
          'tenants reached',
          'instance misses',
          'org-cache misses',
          'evictions',
          'switches/request (behind a statement)',
          'server process CPU µs/request',
          'DB server CPU µs/request',
          'peak tenant conns',
          'peak Threads_connected',
          'peak server RSS MiB',
        ],
        'lrrrrrrrrrrrrrr',
        [
          row('API GET /messages, 1 tenant', 'one', 'one'),
          row(`API GET /messages, ${TENANTS} tenants, Zipf(1.0) per request`, 'fleet', 'one'),
          row('bare multiplexer, 1 tenant', 'bareOne', 'bareOne'),
          row(`bare multiplexer, ${TENANTS} tenants, Zipf(1.0) per request`, 'bareFleet', 'bareOne'),
          ...(results.has('roleOne')
            ? [
                row('bare multiplexer switching with roles, 1 tenant', 'roleOne', 'roleOne'),
                row(`bare multiplexer switching with roles, ${TENANTS} tenants, Zipf(1.0) per request`, 'roleFleet', 'roleOne'),
              ]
            : []),
        ],
      ),
      '',
      `Tenant connections budget: ${process.env.TENANT_CONNECTIONS_MAX ?? 'default'} per server and process (peak above counts the tenant users' sessions in PROCESSLIST); ` +
        `Org-cache misses: orgs and keys read again from the shared DB (an entry read by the warm-up lives ORG_CACHE_MAX_AGE_MS, so the runs after that read the tenants they reach again). ` +
        `CPU per request: the server process's own (/proc), and the database server's (shared with whatever else ran on it meanwhile: an upper bound). ` +
        `\`Threads_connected\` counts the whole server (the API's shared-DB pool, this bench's sampler and anything else on it). ` +
        `API RSS at the end: ${(finalRss / 2 ** 20).toFixed(0)} MiB.`,
      ...(rolesSeconds === undefined
        ? []
        : [
            `With \`FLEET_BARE_ROLES=1\`, the bare multiplexer once more, switching identity with MariaDB roles instead of ` +
              `\`COM_CHANGE_USER\` (a role per tenant with SELECT on its database, all ${TENANTS} granted to one router login, made in ` +
              `${rolesSeconds.toFixed(0)} s; a switch is \`SET ROLE r; USE db; SELECT …\` in one multi-statement, one round trip): what ` +
              `the identity switch would cost with roles (not used by the API: docs/design/connection-multiplexing.md).`,
          ]),
      ...(migrateLine ? [migrateLine] : []),
    ];
    console.log(lines.join('\n'));
    log(`wrote ${await writeDocSection('fleet', '## The fleet (10,000 tenants)', lines)}`);
  } finally {
    if (api) await stopApiProcess(api.child).catch(() => undefined);
    if (bare) await stopApiProcess(bare.child).catch(() => undefined);
    await rm(bareFile, { force: true });
    for (const batch of chunks(rolesMade, 500))
      await root.query(`DROP ROLE IF EXISTS ${batch.map((r) => `\`${r}\``).join(', ')}`).catch(() => undefined);
    if (routerMade) await root.query(`DROP USER IF EXISTS \`${routerMade}\`@'%'`).catch(() => undefined);
    await root.close();
    if (keep) {
      await deps.close().catch(() => undefined);
      log(`kept the run's tenants: FLEET_RUN=${run} FLEET_TENANTS=${TENANTS} reuses them (state in ${stateFile(run)})`);
    } else {
      log('cleaning up (dropping every database and user of the run)…');
      await closeAndCleanUp(deps, config, run, log, true);
    }
  }
}

runBenchFile(main, loadThread);
