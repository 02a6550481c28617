/**
 * Safety proofs for switching a MariaDB session between tenants with COM_CHANGE_USER (mysql2 changeUser), and what
 * COM_CHANGE_USER / COM_RESET_CONNECTION actually reset on this server. Uses muxlab_t1/u1 (A) and muxlab_t2/u2 (B);
 * at most 4 connections.   npx tsx safety.ts
 *
 * Method: most checks go A → B (B must not see/reach anything of A) AND A → B → A (back in A's own database, where
 * privileges no longer hide anything, A's former session state must be gone: that proves a reset, not just a denial).
 */
import mysql from 'mysql2';
import { HOST, PORT, rootConnection, tenant, type TenantCreds } from './common.js';
import { ServerConnections } from './server-connections.js';

const A = tenant(1);
const B = tenant(2);
let failures = 0;
const check = (name: string, ok: boolean, detail: unknown = '') => {
  if (!ok) failures++;
  console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}${detail !== '' ? `  — ${JSON.stringify(detail)}` : ''}`);
};

type P = ReturnType<mysql.Connection['promise']>;
const BASE: mysql.ConnectionOptions = { host: HOST, port: PORT, timezone: '+00:00', flags: ['-FOUND_ROWS'], supportBigNumbers: true };
/** What ServerConnections uses (sequelizeConnectionOptions): same, minus IGNORE_SPACE. */
const ROUTER_OPTS: mysql.ConnectionOptions = { ...BASE, flags: ['-FOUND_ROWS', '-IGNORE_SPACE'] };
const connect = (c: TenantCreds) => mysql.createConnection({ ...BASE, user: c.user, password: c.password, database: c.database });
const q = async (p: P, sql: string, values?: unknown[]): Promise<any> => {
  try { return (await p.query(sql, values))[0]; } catch (e: any) { return { error: e.code as string }; }
};
const one = async (p: P, sql: string) => { const r = await q(p, sql); return Array.isArray(r) ? r[0] : r; };
const changeUser = (c: mysql.Connection, t: TenantCreds, password = t.password) =>
  new Promise<string | null>((res) => c.changeUser({ user: t.user, password, database: t.database }, (e) => res(e ? (e as any).code : null)));
const reset = (c: mysql.Connection) => new Promise<string | null>((res) => (c as any).reset((e: any) => res(e ? e.code : null)));

/** Everything a tenant session could leave behind, set on connection `p` (as A, in A's database). */
async function dirtyA(p: P, tag: string) {
  await q(p, "SET @x = 'secret-of-A'");
  await q(p, "SET SESSION time_zone = '+05:00', SESSION sql_mode = 'ANSI', SESSION wait_timeout = 77, SESSION max_statement_time = 9, SESSION group_concat_max_len = 7, SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE, SESSION autocommit = 1, SESSION innodb_lock_wait_timeout = 3");
  await q(p, 'SET NAMES latin1');
  await q(p, 'CREATE TEMPORARY TABLE tmp_secret (v VARCHAR(20))');
  await q(p, "INSERT INTO tmp_secret VALUES ('temp-of-A')");
  await q(p, "SELECT GET_LOCK('muxlab_lock_A', 0)");
  await q(p, "PREPARE stmtA FROM 'SELECT 42'");
  await q(p, 'START TRANSACTION');
  await q(p, "INSERT INTO messages (`to`, channel, body, cost, created_at, updated_at) VALUES ('x','sms',?,1,NOW(3),NOW(3))", [`uncommitted-${tag}`]);
  await q(p, 'SELECT id FROM messages WHERE id = 1 FOR UPDATE'); // row lock held by the open transaction
  return one(p, 'SELECT CONNECTION_ID() AS id, @@in_transaction AS it, LAST_INSERT_ID() AS li, @x AS x');
}

async function sessionVars(p: P): Promise<Map<string, string>> {
  const rows = (await p.query('SHOW SESSION VARIABLES'))[0] as Array<{ Variable_name: string; Value: string }>;
  return new Map(rows.map((r) => [r.Variable_name, r.Value]));
}

async function main() {
  const root = rootConnection();
  const rp = root.promise();
  await rp.query("SET SESSION innodb_lock_wait_timeout = 1");
  const version = (await one(rp, 'SELECT VERSION() AS v')).v;
  console.log(`server ${version}`);
  const run = Date.now().toString(36);

  // ---------------------------------------------------------------- 1. A → B: isolation of privileges and state
  const c = connect(A);
  c.on('error', () => undefined);
  const p = c.promise();
  const before = await dirtyA(p, `${run}-1`);
  check('setup: A has an open transaction, @x, a temp table', Number(before.it) === 1 && before.x === 'secret-of-A', before);
  check('changeUser A → B succeeds on the same thread', (await changeUser(c, B)) === null);
  const who = await one(p, 'SELECT CONNECTION_ID() AS id, CURRENT_USER() AS cu, DATABASE() AS db');
  check('same physical session (thread id), now user B in B\'s database', who.id === before.id && who.cu === `${B.user}@%` && who.db === B.database, who);
  const readA = await q(p, `SELECT * FROM ${A.database}.messages LIMIT 1`);
  const writeA = await q(p, `INSERT INTO ${A.database}.messages (\`to\`, channel, body, cost, created_at, updated_at) VALUES ('x','sms','from-B',1,NOW(),NOW())`);
  const updA = await q(p, `UPDATE ${A.database}.messages SET body = 'pwned' WHERE id = 1`);
  const useA = await q(p, `USE ${A.database}`);
  const showA = await q(p, `SHOW TABLES FROM ${A.database}`);
  const isA = await one(p, `SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${A.database}'`);
  check('B cannot SELECT from A\'s table', readA.error === 'ER_TABLEACCESS_DENIED_ERROR', readA);
  check('B cannot INSERT into A\'s table', writeA.error === 'ER_TABLEACCESS_DENIED_ERROR', writeA);
  check('B cannot UPDATE A\'s table', updA.error === 'ER_TABLEACCESS_DENIED_ERROR', updA);
  check('B cannot USE A\'s database', useA.error === 'ER_DBACCESS_DENIED_ERROR', useA);
  check('B cannot SHOW TABLES FROM A', showA.error === 'ER_DBACCESS_DENIED_ERROR', showA);
  check('B does not even see A\'s tables in information_schema', Number(isA.n) === 0, isA);
  const afterB = await one(p, "SELECT @x AS x, @@in_transaction AS it, LAST_INSERT_ID() AS li, IS_USED_LOCK('muxlab_lock_A') AS lk, @@session.time_zone AS tz, @@session.sql_mode AS sm, @@session.tx_isolation AS iso, @@character_set_client AS cs, @@session.wait_timeout AS wt, @@session.max_statement_time AS mst");
  check('user variable @x gone', afterB.x === null, afterB.x);
  check('no transaction open after the switch', Number(afterB.it) === 0);
  check('LAST_INSERT_ID() reset to 0', Number(afterB.li) === 0, afterB.li);
  check('named lock (GET_LOCK) released', afterB.lk === null, afterB.lk);
  check('session variables back to global defaults (time_zone, sql_mode, isolation, wait_timeout, max_statement_time)',
    afterB.tz === 'SYSTEM' && afterB.sm !== 'ANSI' && !afterB.sm.includes('ANSI_QUOTES') && afterB.iso === 'REPEATABLE-READ' && Number(afterB.wt) !== 77 && Number(afterB.mst) === 0, afterB);
  check('OBSERVED: character set NOT reset — mysql2 tracked the SET NAMES (session-state tracking) and sent latin1 in COM_CHANGE_USER', afterB.cs === 'latin1', afterB.cs);
  console.log('      → ServerConnections restores the handshake charsetNumber before every changeUser (checked in part 5)');
  const stmt = await q(p, 'EXECUTE stmtA');
  check('SQL-level prepared statement of A gone', stmt.error === 'ER_UNKNOWN_STMT_HANDLER', stmt);
  const uncommitted = await one(rp, `SELECT COUNT(*) AS n FROM ${A.database}.messages WHERE body = 'uncommitted-${run}-1'`);
  check('A\'s uncommitted row rolled back (root sees none)', Number(uncommitted.n) === 0, uncommitted);
  const lock = await q(rp, `SELECT id FROM ${A.database}.messages WHERE id = 1 FOR UPDATE`);
  check('A\'s row lock released (root locks the row at once)', Array.isArray(lock), lock);
  await rp.query('COMMIT');
  // binary protocol: mysql2 clears its statement cache on changeUser, so execute() re-prepares
  const ex = await p.execute('SELECT ? + 1 AS v', [1]).then(([r]: any) => r[0].v, (e: any) => e.code);
  check('binary-protocol execute works after the switch (mysql2 statement cache cleared)', Number(ex) === 2, ex);

  // A → B → A: back in A's own database, nothing of A's old session survives
  check('changeUser B → A', (await changeUser(c, A)) === null);
  const back = await one(p, "SELECT @x AS x, @@in_transaction AS it, @@session.time_zone AS tz");
  const tmp = await q(p, 'SELECT * FROM tmp_secret');
  const row = await one(p, `SELECT COUNT(*) AS n FROM messages WHERE body = 'uncommitted-${run}-1'`);
  check('A → B → A: temp table gone (not just hidden by privileges)', tmp.error === 'ER_NO_SUCH_TABLE', tmp);
  check('A → B → A: @x, transaction, time_zone gone', back.x === null && Number(back.it) === 0 && back.tz === 'SYSTEM', back);
  check('A → B → A: uncommitted row gone', Number(row.n) === 0, row);

  // ---------------------------------------------------------------- 2. full session-variable diff
  const fresh = connect(B);
  const fp = fresh.promise();
  const freshVars = await sessionVars(fp);
  const viaSwitch = connect(A);
  viaSwitch.on('error', () => undefined);
  const vp = viaSwitch.promise();
  await dirtyA(vp, `${run}-2`);
  await changeUser(viaSwitch, B);
  const switchedVars = await sessionVars(vp);
  const diff: Record<string, [string | undefined, string | undefined]> = {};
  const VOLATILE = new Set(['pseudo_thread_id', 'timestamp', 'rand_seed1', 'rand_seed2', 'last_insert_id', 'insert_id', 'identity', 'gtid_seq_no', 'last_gtid']);
  for (const k of new Set([...freshVars.keys(), ...switchedVars.keys()])) {
    if (VOLATILE.has(k)) continue;
    if (freshVars.get(k) !== switchedVars.get(k)) diff[k] = [freshVars.get(k), switchedVars.get(k)];
  }
  console.log(`      SHOW SESSION VARIABLES: ${freshVars.size} variables; fresh-B vs (dirty A → changeUser → B) differ in: ${JSON.stringify(diff)}`);
  check('OBSERVED: raw mysql2 switch differs from a fresh session only in charset (from mysql2, above) and sql_mode IGNORE_SPACE',
    Object.keys(diff).every((k) => k === 'sql_mode' || k.startsWith('character_set_') || k === 'collation_connection'), Object.keys(diff));
  const freshMode = freshVars.get('sql_mode');
  const globalMode = (await one(rp, 'SELECT @@global.sql_mode AS m')).m;
  console.log(`      note: fresh session sql_mode = ${freshMode}; global = ${globalMode}; after changeUser = ${switchedVars.get('sql_mode')}`);
  // the same comparison through the router (budget 1): fresh session of B vs a dirty A session switched to B
  {
    const router = new ServerConnections({ host: HOST, port: PORT, max: 1, acquireTimeoutMs: 2000, connectionOptions: ROUTER_OPTS, sessionInit: "SET time_zone = '+00:00'" });
    const b0 = await router.acquire(B);
    const freshR = await sessionVars(b0.promise());
    router.release(b0);
    const a0 = await router.acquire(A);
    await dirtyA(a0.promise(), `${run}-2r`);
    await a0.promise().query('COMMIT'); // clean release (no dirty reset): only the switch cleans up
    router.release(a0);
    const b1 = await router.acquire(B);
    const switchedR = await sessionVars(b1.promise());
    const d2: Record<string, [string | undefined, string | undefined]> = {};
    for (const k of new Set([...freshR.keys(), ...switchedR.keys()])) if (!VOLATILE.has(k) && freshR.get(k) !== switchedR.get(k)) d2[k] = [freshR.get(k), switchedR.get(k)];
    check('through ServerConnections: B\'s session after (dirty A → switch) equals a fresh B session in all session variables', Object.keys(d2).length === 0, d2);
    const enc = await one(b1.promise(), "SELECT 'żółw €' AS s, HEX('€') AS h");
    check('through ServerConnections: non-ASCII round-trips after A had SET NAMES latin1', enc.s === 'żółw €' && enc.h === 'E282AC', enc);
    router.release(b1);
    await router.close();
  }
  fresh.end();

  // ---------------------------------------------------------------- 3. failed COM_CHANGE_USER
  const f = connect(A);
  f.on('error', () => undefined);
  const fpp = f.promise();
  await q(fpp, "SET @x = 'A'");
  const code = await changeUser(f, B, 'wrong-password');
  const still = await one(fpp, `SELECT CURRENT_USER() AS cu, DATABASE() AS db, @x AS x, (SELECT COUNT(*) FROM ${A.database}.messages) AS readsA`);
  check('failed changeUser (wrong password) → ER_ACCESS_DENIED_ERROR', code === 'ER_ACCESS_DENIED_ERROR', code);
  check('DANGER observed: after a FAILED changeUser the session is still alive as the PREVIOUS user (A) and reads A\'s data',
    still.cu === `${A.user}@%` && Number(still.readsA) > 0, { ...still, mysql2ConfigUserNow: (f as any).config.user, fatalFlag: Boolean((f as any)._fatalError) });
  console.log('      → the router must destroy a connection whose changeUser failed (ServerConnections does; see sequelize-integration.ts #11)');
  f.destroy();

  // ---------------------------------------------------------------- 4. COM_RESET_CONNECTION (used for dirty same-tenant releases)
  const r = connect(A);
  r.on('error', () => undefined);
  const rpp = r.promise();
  await dirtyA(rpp, `${run}-4`);
  const rc = await reset(r);
  const rs = await one(rpp, "SELECT CURRENT_USER() AS cu, DATABASE() AS db, @x AS x, @@in_transaction AS it, @@session.time_zone AS tz, IS_USED_LOCK('muxlab_lock_A') AS lk, @@character_set_client AS cs");
  const rtmp = await q(rpp, 'SELECT * FROM tmp_secret');
  const rrow = await one(rpp, `SELECT COUNT(*) AS n FROM messages WHERE body = 'uncommitted-${run}-4'`);
  check('COM_RESET_CONNECTION keeps user and database', rc === null && rs.cu === `${A.user}@%` && rs.db === A.database, rs);
  check('COM_RESET_CONNECTION resets @x, transaction (rolled back), temp table, named lock, time_zone', rs.x === null && Number(rs.it) === 0 && rtmp.error === 'ER_NO_SUCH_TABLE' && Number(rrow.n) === 0 && rs.lk === null && rs.tz === 'SYSTEM', { ...rs, tmp: rtmp, row: rrow.n });
  console.log(`      note: after COM_RESET_CONNECTION character_set_client = ${rs.cs} (SET NAMES latin1 before)`);
  r.destroy();

  // ---------------------------------------------------------------- 5. the router: release mid-transaction, budget 1
  const events: string[] = [];
  for (const policy of ['reset', 'rollback'] as const) {
    const router = new ServerConnections({ host: HOST, port: PORT, max: 1, acquireTimeoutMs: 2000, connectionOptions: ROUTER_OPTS, sessionInit: "SET time_zone = '+00:00'", dirtyPolicy: policy, onEvent: (e) => events.push(e) });
    const a1 = await router.acquire(A);
    const ap = a1.promise();
    await ap.query('START TRANSACTION');
    await ap.query("INSERT INTO messages (`to`, channel, body, cost, created_at, updated_at) VALUES ('x','sms',?,1,NOW(3),NOW(3))", [`mid-tx-${policy}-${run}`]);
    router.release(a1); // BUG: released inside a transaction
    const a2 = await router.acquire(A); // same tenant, same connection (budget 1), no switch
    const sameT = await one(a2.promise(), `SELECT CONNECTION_ID() AS id, @@in_transaction AS it, @@session.time_zone AS tz, (SELECT COUNT(*) FROM messages WHERE body = 'mid-tx-${policy}-${run}') AS n`);
    check(`router (dirtyPolicy=${policy}): same tenant re-acquires the connection released mid-transaction → no transaction, row rolled back, session init re-applied`,
      a2 === a1 && Number(sameT.it) === 0 && Number(sameT.n) === 0 && sameT.tz === '+00:00', sameT);
    await a2.promise().query('START TRANSACTION');
    await a2.promise().query("INSERT INTO messages (`to`, channel, body, cost, created_at, updated_at) VALUES ('x','sms',?,1,NOW(3),NOW(3))", [`mid-tx2-${policy}-${run}`]);
    router.release(a2);
    const b1 = await router.acquire(B); // switch to B on the same connection
    const bT = await one(b1.promise(), 'SELECT CONNECTION_ID() AS id, CURRENT_USER() AS cu, @@in_transaction AS it');
    const rootN = await one(rp, `SELECT COUNT(*) AS n FROM ${A.database}.messages WHERE body LIKE 'mid-tx%-${policy}-${run}'`);
    check(`router (dirtyPolicy=${policy}): B gets the same physical connection without A's transaction; A's rows never committed`,
      b1 === a1 && bT.cu === `${B.user}@%` && Number(bT.it) === 0 && Number(rootN.n) === 0, { ...bT, rootSees: rootN.n });
    router.release(b1);
    await router.close();
  }
  check('router reported the dirty releases', events.filter((e) => e === 'dirty-release').length === 4, events);

  // ---------------------------------------------------------------- 6. relying on changeUser alone (no reset on release)
  const n = connect(A);
  n.on('error', () => undefined);
  const np = n.promise();
  await np.query('START TRANSACTION');
  await np.query("INSERT INTO messages (`to`, channel, body, cost, created_at, updated_at) VALUES ('x','sms',?,1,NOW(3),NOW(3))", [`changeuser-only-${run}`]);
  await changeUser(n, B);
  const nB = await one(np, 'SELECT @@in_transaction AS it');
  await changeUser(n, A);
  const nA = await one(np, `SELECT COUNT(*) AS n FROM messages WHERE body = 'changeuser-only-${run}'`);
  check('changeUser alone: cross-tenant switch rolls the leaked transaction back (so cross-tenant safety does not depend on the router\'s dirty tracking)', Number(nB.it) === 0 && Number(nA.n) === 0, { it: nB.it, rows: nA.n });
  n.destroy();

  c.destroy();
  viaSwitch.destroy();
  root.end();
  console.log(failures === 0 ? 'ALL PASSED' : `${failures} FAILED`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
