/**
 * Cost of N long-lived tenant Sequelize instances (as cache entries): time and retained heap for
 *   1. new Sequelize(...) with pool options that open nothing (min 0; nothing connects until the first query)
 *   2. + one model defined (the app's Message model, 15 attributes)
 *   3. + attachSequelize() to a ServerConnections (which opens nothing until acquire)
 * and a check that no MySQL connection was opened.
 *   node --expose-gc --import tsx instances.ts [N=10000]
 */
import { performance } from 'node:perf_hooks';
import { DataTypes, Model, Sequelize } from 'sequelize';
import { HOST, PORT, countThreads, rootConnection, tenant } from './common.js';
import { ServerConnections, attachSequelize } from './server-connections.js';

const N = Number(process.argv[2] ?? 10_000);
const gc = (globalThis as any).gc as (() => void) | undefined;
if (!gc) throw new Error('run with node --expose-gc');

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

const make = (i: number) => {
  const c = tenant(i % 1000);
  return new Sequelize(c.database, c.user, c.password, {
    dialect: 'mysql', host: HOST, port: PORT, logging: false, timezone: '+00:00',
    pool: { max: 2, min: 0, idle: 60_000, acquire: 5_000, evict: 1_000 },
    databaseVersion: '10.11.0',
    dialectOptions: { supportBigNumbers: true, bigNumberStrings: false },
    define: { timestamps: false },
  } as any); // databaseVersion is a runtime option missing from Sequelize's Options type
};

const heapMB = () => { gc(); gc(); return process.memoryUsage().heapUsed / 2 ** 20; };

async function main() {
  const root = rootConnection();
  const threads0 = await countThreads(root);
  const router = new ServerConnections({ host: HOST, port: PORT, max: 20, acquireTimeoutMs: 5000, connectionOptions: { timezone: '+00:00' } });
  const rows: string[] = [];
  for (const variant of ['Sequelize only', '+ 1 model', '+ model + attach'] as const) {
    const keep: Sequelize[] = [];
    const h0 = heapMB();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const db = make(i);
      if (variant !== 'Sequelize only') defineMessage(db);
      if (variant === '+ model + attach') attachSequelize(db, router, tenant(i % 1000));
      keep.push(db);
    }
    const ms = performance.now() - t0;
    const h1 = heapMB();
    rows.push(`| ${variant} | ${N} | ${ms.toFixed(0)} | ${(ms / N * 1000).toFixed(0)} | ${(h1 - h0).toFixed(1)} | ${((h1 - h0) * 1024 / N).toFixed(1)} |`);
    console.error(`[instances] ${variant}: ${ms.toFixed(0)} ms, +${(h1 - h0).toFixed(1)} MB heap`);
    for (const db of keep) await db.close();
    keep.length = 0;
  }
  const threads1 = await countThreads(root);
  await router.close();
  root.end();
  console.log(`\nnode ${process.version}; retained heap after forced GC\n`);
  console.log('| instances | N | total ms | µs each | heap MB | KB each |');
  console.log('|---|---:|---:|---:|---:|---:|');
  rows.forEach((r) => console.log(r));
  console.log(`\nmuxlab connections before ${threads0.muxlab}, after ${threads1.muxlab}; router opened ${router.stats().opens}`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
