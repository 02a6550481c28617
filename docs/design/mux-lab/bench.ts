/**
 * GET-style work (`SELECT ... FROM messages ORDER BY id DESC LIMIT 20`, 30-row table) side by side, one process, one
 * server, 20 concurrent callers, sequential phases (each closes everything before the next starts):
 *   a   bare mysql2 pool of 20 connections, one tenant (raw pool.query)
 *   a2  one Sequelize instance, pool max 20, one tenant (sequelize.query) — "one tenant's speed" of today's app
 *   b   TODAY: the app's TenantInstanceCache (vendor/tenancy/pool-cache.ts = /work/main HEAD src/tenancy/pool-cache.ts),
 *       LRU of LRU_MAX Sequelize instances × pool max 2, open = new Sequelize + authenticate + define model,
 *       1,000 tenants, Zipf(1.0) (seeded)
 *   c   MUX: ServerConnections budget 20 shared by 1,000 long-lived Sequelize instances (created before the phase),
 *       same Zipf
 *   d   MUX, one tenant
 * b, c, d run the query through sequelize.query(SQL, { type: SELECT }).
 * Connections: every phase stays ≤ 36 muxlab connections + 1 root connection (sampled every 250 ms and reported).
 *   npx tsx bench.ts [--seconds 3] [--warmup 1] [--lru 18] [--budget 20] [--open-first] [--only a,a2,b,c,c2,d] [--no-mirror]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import mysql from 'mysql2';
import { DataTypes, Model, QueryTypes, Sequelize } from 'sequelize';
import { HOST, PORT, TENANTS, countThreads, mulberry32, rootConnection, tenant, zipfSampler, type TenantCreds } from './common.js';
import { ServerConnections, attachSequelize, sequelizeConnectionOptions } from './server-connections.js';
import { createInstanceCache } from './vendor/tenancy/pool-cache.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string' }, warmup: { type: 'string' }, lru: { type: 'string' }, only: { type: 'string' }, budget: { type: 'string' }, 'open-first': { type: 'boolean' }, mirror: { type: 'boolean', default: true }, 'no-mirror': { type: 'boolean' } } });
const SECONDS = Number(args.seconds ?? 3);
const WARMUP = Number(args.warmup ?? 1);
const LRU_MAX = Number(args.lru ?? 18);
const CALLERS = 20;
const BUDGET = Number(args.budget ?? 20);
const SEED = 20261123;
const SQL = 'SELECT id, `to`, channel, body, status, cost, created_at FROM messages ORDER BY id DESC LIMIT 20';

interface Result { name: string; ops: number; seconds: number; p50: number; p99: number; peakConns: number; extra: string }

function defineMessage(sequelize: Sequelize): void {
  class Msg extends Model {}
  Msg.init({
    id: { type: DataTypes.BIGINT.UNSIGNED, autoIncrement: true, primaryKey: true },
    to: { type: DataTypes.STRING(320), allowNull: false },
    channel: { type: DataTypes.STRING(8), allowNull: false },
    body: { type: DataTypes.TEXT('medium'), allowNull: false },
    status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'QUEUED' },
    cost: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
    attempts: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, defaultValue: 0 },
    errorCode: { type: DataTypes.STRING(64), field: 'error_code' },
    errorText: { type: DataTypes.STRING(1000), field: 'error_text' },
    providerMessageId: { type: DataTypes.STRING(255), field: 'provider_message_id' },
    idempotencyKey: { type: DataTypes.STRING(255), field: 'idempotency_key' },
    requestHash: { type: DataTypes.CHAR(64), field: 'request_hash' },
    createdAt: { type: DataTypes.DATE(3), field: 'created_at' },
    updatedAt: { type: DataTypes.DATE(3), field: 'updated_at' },
    sentAt: { type: DataTypes.DATE(3), field: 'sent_at' },
  }, { sequelize, modelName: 'Message', tableName: 'messages', timestamps: true });
}

/** As /work/main src/db/sequelize.ts createSequelize (tenant settings: idle 60 s, acquire 5 s, connect 2 s). */
function createSequelize(c: TenantCreds, poolMax: number, databaseVersion?: string): Sequelize {
  return new Sequelize(c.database, c.user, c.password, {
    dialect: 'mysql', host: HOST, port: PORT, logging: false, timezone: '+00:00',
    pool: { max: poolMax, min: 0, idle: 60_000, acquire: 5_000, evict: 1_000 },
    dialectOptions: { connectTimeout: 2_000, supportBigNumbers: true, bigNumberStrings: false, dateStrings: false },
    define: { timestamps: false },
    ...(databaseVersion ? { databaseVersion } : {}),
  } as any); // databaseVersion: runtime option missing from the Options type
}

const quantile = (sorted: Float64Array, q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** Runs CALLERS loops of op() for WARMUP s (not recorded) then SECONDS s; samples the connection count. */
async function drive(name: string, root: mysql.Connection, op: (caller: number) => Promise<void>, extra: () => string): Promise<Result> {
  let recording = false;
  let stop = false;
  const lat: number[] = [];
  let peak = 0;
  const sampler = setInterval(() => {
    countThreads(root).then((t) => { peak = Math.max(peak, t.muxlab); }, () => undefined);
  }, 250);
  const loops = Array.from({ length: CALLERS }, async (_, caller) => {
    while (!stop) {
      const t0 = performance.now();
      await op(caller);
      if (recording) lat.push(performance.now() - t0);
    }
  });
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  recording = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  recording = false;
  const seconds = (performance.now() - started) / 1000;
  stop = true;
  await Promise.all(loops);
  clearInterval(sampler);
  const sorted = Float64Array.from(lat).sort();
  const r: Result = { name, ops: lat.length, seconds, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), peakConns: peak, extra: extra() };
  console.error(`[bench] ${name}: ${(r.ops / r.seconds).toFixed(0)} ops/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms, peak ${peak} conns ${r.extra}`);
  return r;
}

type Phase = { key: string; name: string; run(): Promise<Result> };

async function main() {
  const root = rootConnection();
  const only = args.only ? new Set(args.only.split(',')) : undefined;
  const want = (k: string) => !only || only.has(k);
  const hot = tenant(0);
  const template = createSequelize(tenant(0), 2);
  const { connectionOptions, sessionInit } = sequelizeConnectionOptions(template);
  const UTC_ALREADY = "@@global.time_zone IN ('+00:00', 'UTC') OR (@@global.time_zone = 'SYSTEM' AND @@system_time_zone IN ('UTC', 'Etc/UTC'))";
  const makeRouter = (skipInit = false) => new ServerConnections({
    host: HOST, port: PORT, max: BUDGET, acquireTimeoutMs: 5_000, idleMs: 60_000, openBeforeSwitch: Boolean(args['open-first']),
    connectionOptions: { ...connectionOptions, connectTimeout: 2_000 }, sessionInit, sessionInitSkipWhen: skipInit ? UTC_ALREADY : undefined,
  });
  // 1,000 long-lived tenant instances (created once, not timed), re-attached to a fresh router in each c/c2 phase.
  const t0 = performance.now();
  const dbs = Array.from({ length: TENANTS }, (_, i) => { const db = createSequelize(tenant(i), 2, '10.11.0'); defineMessage(db); return db; });
  console.error(`[bench] created ${TENANTS} Sequelize instances + model in ${(performance.now() - t0).toFixed(0)} ms (not timed)`);
  const orgs = Array.from({ length: TENANTS }, (_, i) => {
    const t = tenant(i);
    return { id: i + 1, dbServerId: 1, dbName: t.database, dbUser: t.user, dbPasswordEnc: t.password, creds: t };
  });

  const muxPhase = (key: 'c' | 'c2'): Phase => ({
    key, name: key === 'c' ? `c  MUX budget ${BUDGET}, 1000 tenants Zipf` : `c2 MUX budget ${BUDGET}, 1000 tenants Zipf, no SET time_zone after switch`,
    async run() {
      const router = makeRouter(key === 'c2');
      dbs.forEach((db, i) => attachSequelize(db, router, tenant(i)));
      const zipf = zipfSampler(TENANTS, 1.0, mulberry32(SEED));
      const r = await drive(this.name, root, async () => { await dbs[zipf()]!.query(SQL, { type: QueryTypes.SELECT }); }, () => {
        const st = router.stats();
        return `same-tenant reuse ${(st.sameTenantHits / st.acquires).toFixed(3)}, switches ${(st.switches / st.acquires).toFixed(3)}/acquire, opens ${st.opens}`;
      });
      await router.close();
      return r;
    },
  });
  const phases: Phase[] = [
    { key: 'a', name: 'a  bare mysql2 pool(20), 1 tenant', async run() {
      const pool = mysql.createPool({ host: HOST, port: PORT, user: hot.user, password: hot.password, database: hot.database, connectionLimit: CALLERS, timezone: '+00:00', supportBigNumbers: true });
      const r = await drive(this.name, root, () => new Promise<void>((res, rej) => pool.query(SQL, (e) => (e ? rej(e) : res()))), () => '');
      await new Promise((res) => pool.end(res));
      return r;
    } },
    { key: 'a2', name: 'a2 Sequelize pool(20), 1 tenant', async run() {
      const db = createSequelize(hot, CALLERS);
      defineMessage(db);
      await db.authenticate();
      const r = await drive(this.name, root, async () => { await db.query(SQL, { type: QueryTypes.SELECT }); }, () => '');
      await db.close();
      return r;
    } },
    { key: 'b', name: `b  TODAY LRU ${LRU_MAX} × pool 2, 1000 tenants Zipf`, async run() {
      const zipf = zipfSampler(TENANTS, 1.0, mulberry32(SEED));
      const logger = { debug() {}, info() {}, warn() {}, error() {} } as any;
      const cache = createInstanceCache({
        maxOpen: LRU_MAX, idleMs: 60_000, acquireTimeoutMs: 5_000, retryAfterMs: 2_000, logger,
        async open(org: any) { // as /work/main src/deps.ts
          const db = createSequelize(org.creds, 2);
          try { await db.authenticate(); } catch (err) { await db.close().catch(() => undefined); throw err; }
          defineMessage(db);
          return db;
        },
      });
      const r = await drive(this.name, root, async () => { await cache.withTenant(orgs[zipf()] as any, (db) => db.query(SQL, { type: QueryTypes.SELECT })); },
        () => { const st = cache.stats(); return `hit ratio ${(st.hits / (st.hits + st.misses)).toFixed(3)}, failures ${st.failures}`; });
      await cache.close();
      return r;
    } },
    muxPhase('c'),
    muxPhase('c2'),
    { key: 'd', name: `d  MUX budget ${BUDGET}, 1 tenant`, async run() {
      const router = makeRouter();
      attachSequelize(dbs[0]!, router, hot);
      const r = await drive(this.name, root, async () => { await dbs[0]!.query(SQL, { type: QueryTypes.SELECT }); },
        () => { const st = router.stats(); return `switches ${st.switches}, opens ${st.opens}`; });
      await router.close();
      return r;
    } },
  ].filter((ph) => want(ph.key));

  // Mirrored order (a b c … c b a): each design runs once in each half; reported as the mean of its two runs.
  const order = args['no-mirror'] ? phases : [...phases, ...[...phases].reverse()];
  const byKey = new Map<string, Result[]>();
  for (const ph of order) {
    const r = await ph.run();
    byKey.set(ph.key, [...(byKey.get(ph.key) ?? []), r]);
  }
  for (const db of dbs) await db.close();
  await template.close();
  root.end();

  const mean = (rs: Result[], f: (r: Result) => number) => rs.reduce((a, r) => a + f(r), 0) / rs.length;
  const rows = phases.map((ph) => {
    const rs = byKey.get(ph.key)!;
    return { name: ph.name, ops: mean(rs, (r) => r.ops / r.seconds), runs: rs.map((r) => (r.ops / r.seconds).toFixed(0)).join(' / '), p50: mean(rs, (r) => r.p50), p99: mean(rs, (r) => r.p99), peak: Math.max(...rs.map((r) => r.peakConns)), extra: rs[rs.length - 1]!.extra };
  });
  // Offline: hit ratio of a plain sequential LRU over the same Zipf stream (no concurrency), for LRU_MAX vs 50.
  for (const size of [LRU_MAX, 50]) {
    const z = zipfSampler(TENANTS, 1.0, mulberry32(SEED));
    const lru = new Map<number, true>();
    let hits = 0;
    const N = 200_000;
    for (let i = 0; i < N; i++) {
      const k = z();
      if (lru.delete(k)) hits++;
      lru.set(k, true);
      if (lru.size > size) lru.delete(lru.keys().next().value!);
    }
    console.log(`simulated sequential LRU ${size} over Zipf(1.0)/${TENANTS}: hit ratio ${(hits / N).toFixed(3)}`);
  }
  const a = rows.find((r) => r.name.startsWith('a '));
  const a2 = rows.find((r) => r.name.startsWith('a2'));
  const b = rows.find((r) => r.name.startsWith('b '));
  console.log(`\n${CALLERS} callers; per design ${order.length / phases.length} run(s) of ${SECONDS} s after ${WARMUP} s warm-up, mirrored order; ratios from this run\n`);
  console.log('| design | ops/s (mean) | runs | p50 ms | p99 ms | ÷ (a) | ÷ (a2) | ÷ (b) | peak conns | notes |');
  console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---|');
  for (const r of rows) {
    const f = (x?: { ops: number }) => (x ? (r.ops / x.ops).toFixed(2) : '-');
    console.log(`| ${r.name} | ${r.ops.toFixed(0)} | ${r.runs} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${f(a)} | ${f(a2)} | ${f(b)} | ${r.peak} | ${r.extra} |`);
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
