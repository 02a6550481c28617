/**
 * Does Sequelize 6 (mysql dialect) work on top of ServerConnections? Three tenant instances share a budget of 2
 * physical connections. Checks queries with replacements, Model.findAll/findByPk/create/update (create uses bind →
 * mysql2 execute), managed/unmanaged transactions holding one connection, interleaving under concurrency (every
 * statement lands in its own tenant's session), acquire timeouts, wrong credentials, connections killed while idle or
 * inside a transaction, a transaction leaked by raw SQL, sequelize.close(), and that at most 2 connections exist.
 *   npx tsx sequelize-integration.ts
 */
import { DataTypes, Model, QueryTypes, Sequelize, Transaction } from 'sequelize';
import { HOST, PORT, countThreads, rootConnection, sleep, tenant } from './common.js';
import { ServerConnections, attachSequelize, sequelizeConnectionOptions, type TenantCredentials } from './server-connections.js';

let failures = 0;
function check(name: string, ok: boolean, detail: unknown = ''): void {
  if (!ok) failures++;
  console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}${detail !== '' ? `  — ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}`);
}
async function rejects(p: Promise<unknown>): Promise<Error | undefined> {
  try { await p; return undefined; } catch (e) { return e as Error; }
}

function newTenantSequelize(c: TenantCredentials, router?: ServerConnections): Sequelize {
  const db = new Sequelize(c.database, c.user, c.password, {
    dialect: 'mysql', host: HOST, port: PORT, logging: false, timezone: '+00:00',
    // Never used when attached (no pool is created by these options: min 0 opens nothing, no timer starts).
    pool: { max: 2, min: 0, idle: 10_000, acquire: 1_500, evict: 1_000 },
    databaseVersion: router?.serverVersion ?? '10.11.0',
    dialectOptions: { supportBigNumbers: true, bigNumberStrings: false, dateStrings: false },
    define: { timestamps: false },
  } as any); // databaseVersion is a runtime option missing from Sequelize's Options type
  class Msg extends Model {}
  Msg.init({
    id: { type: DataTypes.BIGINT.UNSIGNED, autoIncrement: true, primaryKey: true },
    to: { type: DataTypes.STRING(320), allowNull: false },
    channel: { type: DataTypes.STRING(8), allowNull: false },
    body: { type: DataTypes.TEXT('medium'), allowNull: false },
    status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'QUEUED' },
    cost: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
    createdAt: { type: DataTypes.DATE(3), field: 'created_at' },
    updatedAt: { type: DataTypes.DATE(3), field: 'updated_at' },
  }, { sequelize: db, modelName: 'Message', tableName: 'messages', timestamps: true });
  return db;
}

async function main() {
  const run = Date.now().toString(36);
  const root = rootConnection();
  const events: Array<[string, Record<string, unknown>]> = [];
  const template = newTenantSequelize(tenant(0));
  const { connectionOptions, sessionInit } = sequelizeConnectionOptions(template);
  const router = new ServerConnections({
    host: HOST, port: PORT, max: 2, acquireTimeoutMs: 1500, idleMs: 30_000,
    connectionOptions: { ...connectionOptions, connectTimeout: 2000 }, sessionInit,
    onEvent: (e, d) => events.push([e, d]),
  });
  const T = [tenant(1), tenant(2), tenant(3)];
  const dbs = T.map((c) => {
    const db = newTenantSequelize(c, router);
    attachSequelize(db, router, c);
    return db;
  });
  const Msg = (i: number) => dbs[i]!.model('Message');
  const whoami = (i: number, opts: object = {}) =>
    dbs[i]!.query<{ cu: string; db: string; tz: string; id: number; it: number }>(
      'SELECT CURRENT_USER() AS cu, DATABASE() AS db, @@session.time_zone AS tz, CONNECTION_ID() AS id, @@in_transaction AS it',
      { type: QueryTypes.SELECT, plain: true, ...opts } as any) as any;

  // 1. authenticate + identity on each tenant
  for (let i = 0; i < 3; i++) await dbs[i]!.authenticate();
  for (let i = 0; i < 3; i++) {
    const w = await whoami(i);
    check(`tenant ${i + 1}: session is its own user/db with time_zone +00:00`, w.cu === `${T[i]!.user}@%` && w.db === T[i]!.database && w.tz === '+00:00', w);
  }
  check('databaseVersion probe never ran (set from the option)', (dbs[0] as any).options.databaseVersion !== 0, (dbs[0] as any).options.databaseVersion);

  // 2. replacements
  const rep = await dbs[0]!.query('SELECT COUNT(*) AS n FROM messages WHERE body LIKE :p AND id > ?'.replace('?', ':min'), { replacements: { p: 'hello%', min: 0 }, type: QueryTypes.SELECT, plain: true }) as any;
  check('sequelize.query with replacements', Number(rep.n) >= 30, rep);

  // 3. models: findAll / findByPk / create (bind → execute) / update
  const rows = await Msg(1).findAll({ order: [['id', 'DESC']], limit: 20 });
  check('Model.findAll order/limit', rows.length === 20 && (rows[0] as any).id > (rows[19] as any).id);
  const one = await Msg(1).findByPk((rows[5] as any).id);
  check('Model.findByPk', (one as any)?.id === (rows[5] as any).id);
  const before = Date.now();
  const created = await Msg(2).create({ to: '+15550001111', channel: 'sms', body: 'created via mux', cost: 1 });
  const back = await Msg(2).findByPk((created as any).id) as any;
  check('Model.create + read back (DATETIME(3) round trip in UTC)', back && Math.abs(back.createdAt.getTime() - before) < 5000, { createdAt: back?.createdAt });
  const [affected] = await Msg(2).update({ status: 'SENT' }, { where: { id: (created as any).id } });
  check('Model.update', affected === 1);
  const raw = await dbs[2]!.query("SELECT DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s') AS c FROM messages WHERE id = :id", { replacements: { id: (created as any).id }, type: QueryTypes.SELECT, plain: true }) as any;
  check('stored DATETIME is UTC (session time_zone honoured after switches)', raw.c === back.createdAt.toISOString().slice(0, 19), raw);

  // 4. managed transaction holds one connection; others are served by the other one meanwhile
  let txIds: number[] = [];
  const during: string[] = [];
  await dbs[0]!.transaction(async (t) => {
    for (let k = 0; k < 3; k++) {
      txIds.push((await whoami(0, { transaction: t })).id);
      await Msg(0).create({ to: 'x', channel: 'sms', body: `tx-commit-${k}-${run}`, cost: 1 }, { transaction: t });
      // meanwhile other tenants run on the other connection (switching between 2 and 3)
      const [a, b] = await Promise.all([whoami(1), whoami(2)]);
      during.push(`${a.db}/${b.db}`);
    }
    const w = await whoami(0, { transaction: t });
    check('inside a transaction @@in_transaction = 1', Number(w.it) === 1, w);
  });
  check('transaction kept one connection from begin to commit', new Set(txIds).size === 1, txIds);
  check('other tenants ran meanwhile in their own sessions', during.every((d) => d === `${T[1]!.database}/${T[2]!.database}`), during);
  const committed = await Msg(0).count({ where: { body: [0, 1, 2].map((k) => `tx-commit-${k}-${run}`) } });
  check('committed rows visible', committed === 3, committed);

  const err = await rejects(dbs[0]!.transaction(async (t) => {
    await Msg(0).create({ to: 'x', channel: 'sms', body: 'tx-rollback', cost: 1 }, { transaction: t });
    throw new Error('boom');
  }));
  check('managed transaction rolls back on throw', err?.message === 'boom' && (await Msg(0).count({ where: { body: 'tx-rollback' } })) === 0);

  // unmanaged transaction with isolation level
  const ut = await dbs[1]!.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED });
  await Msg(1).create({ to: 'x', channel: 'sms', body: 'unmanaged', cost: 1 }, { transaction: ut });
  await ut.rollback();
  check('unmanaged transaction rollback', (await Msg(1).count({ where: { body: 'unmanaged' } })) === 0);

  // 5. budget exhausted by 2 open transactions: a third caller waits, then times out as Sequelize's error
  const t1 = await dbs[0]!.transaction();
  const t2 = await dbs[1]!.transaction();
  const started = Date.now();
  const e3 = await rejects(whoami(2));
  check('3rd caller with both connections in transactions → ConnectionAcquireTimeoutError after acquireTimeoutMs',
    e3?.name === 'SequelizeConnectionAcquireTimeoutError' && Date.now() - started >= 1400, `${e3?.name} after ${Date.now() - started} ms`);
  const waiting = whoami(2);
  await sleep(50);
  await t1.commit();
  const w3 = await waiting;
  check('queued caller served (switched) as soon as a transaction committed', w3.db === T[2]!.database, w3);
  await t2.commit();

  // 6. interleaving stress: 300 operations over 3 tenants, budget 2; each must see only its own session
  const rnd = (n: number) => Math.floor(Math.random() * n);
  const mismatches: unknown[] = [];
  await Promise.all(Array.from({ length: 300 }, async (_, k) => {
    const i = rnd(3);
    if (k % 10 === 0) {
      await dbs[i]!.transaction(async (t) => {
        const w = await whoami(i, { transaction: t });
        const w2 = await whoami(i, { transaction: t });
        if (w.db !== T[i]!.database || w.id !== w2.id) mismatches.push({ k, i, w, w2 });
      });
    } else {
      const w = await whoami(i);
      if (w.db !== T[i]!.database || w.cu !== `${T[i]!.user}@%` || w.tz !== '+00:00' || Number(w.it) !== 0) mismatches.push({ k, i, w });
    }
  }));
  check('300 concurrent ops (30 in transactions) over 3 tenants / 2 connections: no cross-wiring', mismatches.length === 0, mismatches.slice(0, 3));
  let threads = await countThreads(root);
  check('physical connections of muxlab users ≤ budget 2', threads.muxlab <= 2, threads);

  // 7. a transaction leaked by raw SQL (a bug): the connection is released with a transaction open
  await dbs[0]!.query('START TRANSACTION');
  const after = await whoami(0);
  check('raw START TRANSACTION leaked: next same-tenant query is not inside it (reset on release)', Number(after.it) === 0, after);
  check('router logged the dirty release', events.some(([e]) => e === 'dirty-release'));
  // 7b. a connection released in the middle of a Sequelize transaction (a bug), then the stale transaction is used
  const tb = await dbs[0]!.transaction();
  await Msg(0).create({ to: 'x', channel: 'sms', body: 'released-mid-tx', cost: 1 }, { transaction: tb });
  const tbThread = (tb as any).connection.threadId;
  dbs[0]!.connectionManager.releaseConnection((tb as any).connection); // the bug
  // make the same physical connection belong to another tenant now
  const others = await Promise.all([whoami(1), whoami(2)]);
  const reused = others.find((o) => o.id === tbThread);
  const eStale = await rejects(Msg(0).create({ to: 'x', channel: 'sms', body: 'stale-handle-write', cost: 1 }, { transaction: tb }));
  check('stale transaction handle refuses to run SQL (LeaseRevokedError), even after its connection went to another tenant',
    /already released/.test(eStale?.message ?? ''), { err: eStale?.message, reusedBy: reused?.db ?? 'not reused' });
  await rejects(tb.rollback());
  const rootCount = (await root.promise().query(`SELECT COUNT(*) AS n FROM ${T[0]!.database}.messages WHERE body IN ('released-mid-tx','stale-handle-write')`))[0] as any;
  check('the released transaction was rolled back (reset on release), nothing from the stale handle written', Number(rootCount[0].n) === 0, rootCount[0]);
  await dbs[0]!.query('SET autocommit = 0');
  const ac = await dbs[0]!.query('SELECT @@autocommit AS ac', { type: QueryTypes.SELECT, plain: true }) as any;
  check('SET autocommit=0 leaked by raw SQL is reset on release', Number(ac.ac) === 1, ac);

  // 8. an SQL error is not fatal: connection reused
  const destroyedBefore = router.stats().destroyed;
  const se = await rejects(dbs[1]!.query('SELEC 1'));
  await whoami(1);
  check('SQL syntax error → SequelizeDatabaseError, connection kept', se?.name === 'SequelizeDatabaseError' && router.stats().destroyed === destroyedBefore, se?.name);

  // 9. a connection killed while idle is not lent again
  const idleId = (await whoami(2)).id;
  await root.promise().query(`KILL ${idleId}`);
  await sleep(100);
  const w9 = await whoami(2);
  check('connection killed while idle: dropped, next query on a good one', w9.id !== idleId && w9.db === T[2]!.database, { killed: idleId, now: w9.id });

  // 10. a connection killed inside a transaction: query fails, rollback fails, Sequelize destroys it via destroyConnection
  const t10 = await dbs[1]!.transaction();
  const id10 = (await whoami(1, { transaction: t10 })).id;
  await root.promise().query(`KILL ${id10}`);
  const e10 = await rejects(whoami(1, { transaction: t10 }));
  const e10b = await rejects(t10.rollback());
  await sleep(50);
  const w10 = await whoami(1);
  check('killed inside a transaction: query errors, connection never reused, budget recovers',
    Boolean(e10) && w10.id !== id10 && w10.db === T[1]!.database, { queryErr: e10?.name, rollbackErr: e10b?.name ?? null, stats: router.stats() });

  // 11. wrong credentials: AccessDeniedError; a switch that fails destroys the connection
  const bad = { ...tenant(4), password: 'wrong' };
  const badDb = newTenantSequelize(bad, router);
  attachSequelize(badDb, router, bad);
  const sfBefore = router.stats().switchFailures;
  const e11 = await rejects(badDb.authenticate());
  check('wrong password → SequelizeAccessDeniedError', e11?.name === 'SequelizeAccessDeniedError', e11?.name);
  check('failed changeUser destroyed the connection', router.stats().switchFailures === sfBefore + 1, router.stats());
  for (let i = 0; i < 3; i++) {
    const w = await whoami(i);
    if (w.db !== T[i]!.database) check(`after failed switch tenant ${i + 1} still correct`, false, w);
  }

  // 12. close(): waits for the lease in use, then refuses; the router keeps serving the other tenants
  const slow = dbs[2]!.query('SELECT SLEEP(0.3) AS s', { type: QueryTypes.SELECT });
  await sleep(20);
  const closing = dbs[2]!.close();
  await slow;
  await closing;
  const e12 = await rejects(whoami(2));
  check('sequelize.close() waited for the running query, then refuses', /closed/.test(e12?.message ?? ''), e12?.message);
  check('other tenants unaffected after one instance closed', (await whoami(0)).db === T[0]!.database);

  // 13. server unreachable: Sequelize's own error class
  const refused = new ServerConnections({ host: HOST, port: 1, max: 2, acquireTimeoutMs: 1500, connectionOptions });
  const rDb = newTenantSequelize(T[0]!, refused);
  attachSequelize(rDb, refused, T[0]!);
  const e13 = await rejects(rDb.authenticate());
  check('server down → SequelizeConnectionRefusedError', e13?.name === 'SequelizeConnectionRefusedError', e13?.name);
  check('…and the budget is not leaked by the failed open', refused.stats().open === 0 && refused.stats().opening === 0, refused.stats());
  await refused.close();

  // 14. a server that accepts TCP but never answers: the acquire deadline covers opening, not only queueing
  const net = await import('node:net');
  const sockets: import('node:net').Socket[] = [];
  const silent = net.createServer((sock) => { sockets.push(sock); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const silentPort = (silent.address() as import('node:net').AddressInfo).port;
  const hung = new ServerConnections({ host: '127.0.0.1', port: silentPort, max: 1, acquireTimeoutMs: 300, connectionOptions: { ...connectionOptions, connectTimeout: 800 } });
  const hDb = newTenantSequelize(T[0]!, hung);
  attachSequelize(hDb, hung, T[0]!);
  const t14 = Date.now();
  const e14 = await rejects(hDb.authenticate());
  check('handshake never answered → ConnectionAcquireTimeoutError at acquireTimeoutMs (not connectTimeout)', e14?.name === 'SequelizeConnectionAcquireTimeoutError' && Date.now() - t14 < 700, `${e14?.name} after ${Date.now() - t14} ms`);
  await sleep(1000); // connectTimeout fires later: the slot must come back
  check('…the late connect failure frees the budget slot', hung.stats().opening === 0 && hung.stats().open === 0, hung.stats());
  await hung.close();
  sockets.forEach((x) => x.destroy());
  silent.close();

  // 15. sessionInitSkipWhen: the server's global time zone is already UTC → no SET after switches, same results
  const skipR = new ServerConnections({
    host: HOST, port: PORT, max: 1, acquireTimeoutMs: 1500, connectionOptions, sessionInit,
    sessionInitSkipWhen: "@@global.time_zone IN ('+00:00', 'UTC') OR (@@global.time_zone = 'SYSTEM' AND @@system_time_zone IN ('UTC', 'Etc/UTC'))",
  });
  const sDbs = [T[0]!, T[1]!].map((c) => { const db = newTenantSequelize(c, skipR); attachSequelize(db, skipR, c); return db; });
  await sDbs[0]!.authenticate();
  const sw = await sDbs[1]!.query('SELECT @@session.time_zone AS tz, @@system_time_zone AS sys', { type: QueryTypes.SELECT, plain: true }) as any;
  const before15 = Date.now();
  const c15 = await sDbs[1]!.model('Message').create({ to: 'x', channel: 'sms', body: 'skip-init', cost: 1 }) as any;
  const r15 = await sDbs[1]!.query("SELECT DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s') AS c, DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i') AS u, DATE_FORMAT(NOW(), '%Y-%m-%dT%H:%i') AS n FROM messages WHERE id = :id", { replacements: { id: c15.id }, type: QueryTypes.SELECT, plain: true }) as any;
  check('skip-init: switched session keeps the global (SYSTEM = UTC) zone; NOW() = UTC; DATETIME written in UTC',
    sw.tz === 'SYSTEM' && sw.sys === 'UTC' && r15.u === r15.n && r15.c === new Date(c15.createdAt).toISOString().slice(0, 19) && Math.abs(c15.createdAt - before15) < 5000, { ...sw, ...r15 });
  for (const db of sDbs) await db.close();
  await skipR.close();

  threads = await countThreads(root);
  check('physical connections of muxlab users ≤ budget 2 at the end', threads.muxlab <= 2, threads);
  console.log('router stats', router.stats());
  for (const db of dbs) await db.close().catch(() => undefined);
  await router.close();
  await template.close();
  await sleep(100);
  threads = await countThreads(root);
  check('no muxlab connection left after router.close()', threads.muxlab === 0, threads);
  root.end();
  console.log(failures === 0 ? 'ALL PASSED' : `${failures} FAILED`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
