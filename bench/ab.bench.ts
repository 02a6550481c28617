/**
 * Two builds side by side: an API process from each checkout (`src/main.ts --role api`, the same environment), over
 * the tenants a `bench:fleet` run kept, loaded in turn (A B, then B A…) by autocannon with 20 connections (AB_CONNECTIONS). Reported per
 * run and in total: requests per second, the p99 latency (in the total, the worst of the runs), and the CPU each API
 * process, the database server and Redis used per request (from /proc), which on a shared 2-core machine moves far less
 * than requests per second do: a 5 % change shows in CPU per request where one run's req/s spread hides it (an A/A run
 * of one build against itself agrees within about 1 %).
 * Nothing is written to docs/benchmarks.md: a pass quotes what it measured with it.
 *
 *   FLEET_KEEP=1 npm run bench:fleet                 # once: keeps its tenants, prints FLEET_RUN=<run>
 *   git worktree add /tmp/before <commit> && ln -s "$PWD/node_modules" /tmp/before/node_modules
 *   FLEET_RUN=<run> npm run bench:ab -- /tmp/before . get
 *
 * Scenarios: `get` (GET /messages of the run's third tenant, or AB_TENANT's), `post` (POST /messages of the second; it
 * adds rows and queued jobs to that tenant: delete them before a `bench:fleet` run), `fleet` (GET /messages, each
 * request's tenant drawn from Zipf(1.0) over all of them), or AB_PHASES=get,fleet to alternate. Tunables (defaults in
 * brackets): FLEET_RUN [required], AB_CONNECTIONS [20: autocannon's, at the API's default budget of tenant
 * connections; more queue for them], AB_SECONDS [5], AB_ROUNDS [4], AB_TENANT [2], AB_WARM [0: 1 sends one request for
 * every tenant to each process first], AB_ENV_B [extra variables for B only: `K=V,K2=V2`].
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { cpuOf, loadRunConfig, positiveInt, redisPid, startServerProcess, stopOnCtrlC, tunable, zipfSampler } from './bench-lib.js';

const DEFAULTS = {
  FLEET_RUN: undefined,
  AB_SECONDS: '5',
  AB_ROUNDS: '4',
  AB_TENANT: '2',
  AB_WARM: '0',
  AB_ENV_B: '',
  AB_PHASES: '',
  AB_CONNECTIONS: '20',
} as const;
type Scenario = 'get' | 'post' | 'fleet';
const SCENARIOS: readonly string[] = ['get', 'post', 'fleet'];

interface Tenant {
  id: number;
  apiKey: string;
}
interface Totals {
  /** The worst p99 latency of its runs (ms). */
  p99: number;
  responses: number;
  seconds: number;
  apiCpu: number;
  dbCpu: number;
  redisCpu: number;
}

/** `src/main.ts --role api` of the checkout in `dir`. */
const startApi = (dir: string, env: NodeJS.ProcessEnv) => startServerProcess(['--import', 'tsx', 'src/main.ts', '--role', 'api'], env, dir);

async function main(): Promise<void> {
  stopOnCtrlC();
  const [dirA, dirB, scenarioArg = 'get'] = process.argv.slice(2);
  const phases = tunable('AB_PHASES', DEFAULTS).split(',').filter(Boolean);
  for (const s of [scenarioArg, ...phases]) if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}: get, post or fleet`);
  if (!dirA || !dirB) throw new Error('usage: npm run bench:ab -- <checkout A> <checkout B> [get|post|fleet]');
  const run = tunable('FLEET_RUN', DEFAULTS);
  if (!run) throw new Error('FLEET_RUN names the bench:fleet run whose tenants to use (kept with FLEET_KEEP=1)');
  const seconds = positiveInt(tunable('AB_SECONDS', DEFAULTS), 'AB_SECONDS');
  const rounds = positiveInt(tunable('AB_ROUNDS', DEFAULTS), 'AB_ROUNDS');
  const getTenant = Number(tunable('AB_TENANT', DEFAULTS));
  const overrides = { RATE_LIMIT_POINTS: '100000000', AUTH_FAILURE_LIMIT: '100000000' };
  const config = loadRunConfig(run, overrides);
  const tenants = JSON.parse(await readFile(path.join(os.tmpdir(), `bench-fleet-${run}.json`), 'utf8')) as Tenant[];
  const env = {
    ...process.env,
    ...overrides,
    DB_NAME: config.db.name,
    TENANT_DB_PREFIX: config.tenant.dbPrefix,
    QUEUE_PREFIX: run,
    LOG_LEVEL: 'error',
  };
  const extraB = Object.fromEntries(
    tunable('AB_ENV_B', DEFAULTS)
      .split(',')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const pidFile = await readFile('/run/mysqld/mysqld.pid', 'utf8').catch(() => '');
  const dbPid = Number(pidFile.trim()) || undefined;
  // Redis's CPU too: a POST's add runs there.
  const redis = new Redis(config.redisUrl, { lazyConnect: true });
  const redisServerPid = await redisPid(redis).finally(() => redis.disconnect());
  const cpuOrZero = (pid: number | undefined) => (pid ? cpuOf(pid) : Promise.resolve(0));
  const body = JSON.stringify({ to: '+15551234567', channel: 'sms', body: 'hello from the bench' });

  const load = async (url: string, scenario: Scenario, opts: { seconds: number; seed: number; each?: boolean }) => {
    const pick = zipfSampler(tenants.length, 1.0, opts.seed);
    let next = 0;
    const tenantFor = () =>
      opts.each ? tenants[next++ % tenants.length]! : tenants[scenario === 'fleet' ? pick() : scenario === 'post' ? 1 : getTenant]!;
    const result = await autocannon({
      url,
      connections: positiveInt(tunable('AB_CONNECTIONS', DEFAULTS), 'AB_CONNECTIONS'),
      duration: opts.seconds,
      requests: [
        {
          method: scenario === 'post' ? 'POST' : 'GET',
          path: '/messages',
          setupRequest: (req) => {
            const t = tenantFor();
            return {
              ...req,
              body: scenario === 'post' ? body : undefined,
              headers: { 'x-org-id': String(t.id), authorization: `Bearer ${t.apiKey}`, 'content-type': 'application/json' },
            };
          },
        },
      ],
    });
    if (result.non2xx > 0 || result.errors > 0)
      throw new Error(`${scenario} against ${url}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
    return { responses: result['2xx'], p99: result.latency.p99 };
  };

  const procs = { A: await startApi(dirA, env), B: await startApi(dirB, { ...env, ...extraB }) };
  const totals: Record<'A' | 'B', Totals> = {
    A: { p99: 0, responses: 0, seconds: 0, apiCpu: 0, dbCpu: 0, redisCpu: 0 },
    B: { p99: 0, responses: 0, seconds: 0, apiCpu: 0, dbCpu: 0, redisCpu: 0 },
  };
  try {
    for (const p of Object.values(procs)) {
      if (tunable('AB_WARM', DEFAULTS) === '1') await load(p.url, 'get', { seconds: Math.ceil(tenants.length / 600), seed: 1, each: true });
      await load(p.url, scenarioArg as Scenario, { seconds: 2, seed: 99 });
    }
    for (let i = 0; i < rounds; i++) {
      const scenario = (phases.length ? phases[i % phases.length]! : scenarioArg) as Scenario;
      for (const name of i % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) {
        const { child, url } = procs[name];
        const [api0, db0, r0] = [await cpuOf(child.pid!), await cpuOrZero(dbPid), await cpuOrZero(redisServerPid)];
        const { responses, p99 } = await load(url, scenario, { seconds, seed: i + 1 });
        const [api1, db1, r1] = [await cpuOf(child.pid!), await cpuOrZero(dbPid), await cpuOrZero(redisServerPid)];
        Object.assign(totals[name], {
          p99: Math.max(totals[name].p99, p99),
          responses: totals[name].responses + responses,
          seconds: totals[name].seconds + seconds,
          apiCpu: totals[name].apiCpu + api1 - api0,
          dbCpu: totals[name].dbCpu + db1 - db0,
          redisCpu: totals[name].redisCpu + r1 - r0,
        });
        console.log(
          `${name} ${scenario} run ${i + 1}: ${(responses / seconds).toFixed(0)} req/s, p99 ${p99} ms, API ${((1e6 * (api1 - api0)) / responses).toFixed(0)} µs/request, ` +
            `database ${((1e6 * (db1 - db0)) / responses).toFixed(0)} µs/request, Redis ${((1e6 * (r1 - r0)) / responses).toFixed(0)} µs/request`,
        );
      }
    }
    for (const name of ['A', 'B'] as const) {
      const t = totals[name];
      console.log(
        `${name} (${name === 'A' ? dirA : dirB}): ${(t.responses / t.seconds).toFixed(0)} req/s, worst p99 ${t.p99} ms, API ${((1e6 * t.apiCpu) / t.responses).toFixed(0)} µs/request, ` +
          `database ${((1e6 * t.dbCpu) / t.responses).toFixed(0)} µs/request, Redis ${((1e6 * t.redisCpu) / t.responses).toFixed(0)} µs/request`,
      );
    }
  } finally {
    for (const { child } of Object.values(procs)) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }
}

await main();
