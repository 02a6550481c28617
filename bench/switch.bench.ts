/**
 * What a tenant switch costs on one raw mysql2 connection, against the same SELECT on a session already serving the
 * tenant (the hit), side by side in rotated rounds so that a shared machine's load weighs on every variant alike:
 *   hit        SELECT on a session already logged in as the tenant;
 *   switch     COM_CHANGE_USER to the other tenant's own user (+ MariaDB's fresh-scramble round trip), the session init
 *              (`SET time_zone, max_statement_time`), then the SELECT: a tenant whose account lacks its statement limit;
 *   no-init    the same without the session init: what server-connections.ts does for an account made `WITH
 *              MAX_STATEMENT_TIME` (the provisioner's, or after `bin/tenant accounts sync`) on a server in UTC;
 *   role       one login user granted every tenant's role: `SET ROLE r; USE db; SELECT` in ONE round trip
 *              (multipleStatements). Measured, not used: the login user can take ANY of its roles, so a session's
 *              SQL could reach every tenant of the server (least privilege lost; see docs/design/connection-multiplexing.md).
 *
 *   npm run bench:switch
 *
 * Tunables: SWITCH_ITERATIONS [2000] per variant and round, SWITCH_ROUNDS [3]. Everything it creates is removed.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import mysql from 'mysql2';
import { loadConfig } from '../config/config.js';
import { createSequelize, serverVersion } from '../src/platform/db/sequelize.js';
import { tenantAccountLimits, tenantSessionInit } from '../src/platform/tenant-connections/tenant-connections.js';
import { commandLine, describeMachine, markdownTable, positiveInt, tunable, writeDocSection } from './bench-lib.js';

const DEFAULTS = { SWITCH_ITERATIONS: '2000', SWITCH_ROUNDS: '3' } as const;
const N = positiveInt(tunable('SWITCH_ITERATIONS', DEFAULTS), 'SWITCH_ITERATIONS');
const ROUNDS = positiveInt(tunable('SWITCH_ROUNDS', DEFAULTS), 'SWITCH_ROUNDS');

const q = (c: mysql.Connection, sql: string) =>
  new Promise<unknown>((resolve, reject) => c.query(sql, (err, rows) => (err ? reject(err) : resolve(rows))));
const changeUser = (c: mysql.Connection, o: { user: string; password: string; database: string }) =>
  new Promise<void>((resolve, reject) => c.changeUser(o, (err) => (err ? reject(err) : resolve())));
const connect = (o: mysql.ConnectionOptions) =>
  new Promise<mysql.Connection>((resolve, reject) => {
    const c = mysql.createConnection(o);
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });

async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'silent' });
  const run = `sw${randomBytes(3).toString('hex')}`;
  const root = createSequelize({ ...config.db, database: undefined, poolMax: 1 });
  const { host, port } = config.db;
  const tenants = [1, 2].map((i) => ({
    user: `${run}_u${i}`,
    password: randomBytes(12).toString('hex'),
    database: `${run}_d${i}`,
    role: `${run}_r${i}`,
  }));
  const login = { user: `${run}_login`, password: randomBytes(12).toString('hex') };
  const conns: mysql.Connection[] = [];
  try {
    for (const t of tenants) {
      await root.query(`CREATE DATABASE \`${t.database}\``);
      await root.query(`CREATE TABLE \`${t.database}\`.messages (id INT PRIMARY KEY, body VARCHAR(100))`);
      await root.query(`INSERT INTO \`${t.database}\`.messages VALUES (1, 'a'), (2, 'b')`);
      // As the provisioner makes them: the account carries its statement limit (the no-init variant relies on it).
      await root.query(
        `CREATE USER '${t.user}'@'%' IDENTIFIED BY '${t.password}'${tenantAccountLimits(await serverVersion(root), 10_000)}`,
      );
      await root.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON \`${t.database}\`.* TO '${t.user}'@'%'`);
      await root.query(`CREATE ROLE \`${t.role}\``);
      await root.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON \`${t.database}\`.* TO \`${t.role}\``);
    }
    await root.query(`CREATE USER '${login.user}'@'%' IDENTIFIED BY '${login.password}'`);
    for (const t of tenants) await root.query(`GRANT \`${t.role}\` TO '${login.user}'@'%'`);

    // As tenant connections are made (tenant-connections.ts): a small statement cache, which COM_CHANGE_USER empties.
    const base = { host, port, timezone: '+00:00' as const, maxPreparedStatements: 16 };
    const { user, password, database } = tenants[0]!;
    const tenantConn = await connect({ ...base, user, password, database });
    const roleConn = await connect({ ...base, ...login, multipleStatements: true });
    conns.push(tenantConn, roleConn);
    const [{ version }] = (await q(tenantConn, 'SELECT VERSION() AS version')) as [{ version: string }];
    const init = tenantSessionInit(version, 10_000);
    const select = 'SELECT id, body FROM messages ORDER BY id DESC LIMIT 20';
    let k = 0;
    const variants: Record<string, () => Promise<unknown>> = {
      hit: () => q(tenantConn, select),
      switch: async () => {
        await changeUser(tenantConn, tenants[++k % 2]!);
        await q(tenantConn, init);
        return q(tenantConn, select);
      },
      'no-init': async () => {
        await changeUser(tenantConn, tenants[++k % 2]!);
        return q(tenantConn, select);
      },
      role: () => {
        const t = tenants[++k % 2]!;
        return q(roleConn, `SET ROLE \`${t.role}\`; USE \`${t.database}\`; ${select}`);
      },
    };
    const names = Object.keys(variants);
    const times = new Map<string, number[]>(names.map((n) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const name of [...names.slice(r % names.length), ...names.slice(0, r % names.length)]) {
        for (let i = 0; i < 100; i++) await variants[name]!(); // warm-up
        const started = performance.now();
        for (let i = 0; i < N; i++) await variants[name]!();
        times.get(name)!.push(((performance.now() - started) * 1000) / N);
      }
    }
    const mean = (name: string) => times.get(name)!.reduce((a, b) => a + b, 0) / ROUNDS;
    const lines = [
      `Measured on ${new Date().toISOString().slice(0, 10)}: ${await describeMachine(root)}.`,
      `Command: \`${commandLine('bench:switch', Object.keys(DEFAULTS))}\`. One raw mysql2 connection per variant, ${N} sequential ` +
        `requests per variant and round, ${ROUNDS} rounds in rotated order; each request ends with the same SELECT of 2 rows.`,
      '',
      markdownTable(['variant', 'µs per request (mean of rounds)', 'round trips', 'ratio to hit'], 'lrrr', [
        ['hit: SELECT on a session of the tenant', mean('hit').toFixed(0), 1, '1.00×'],
        [
          'switch: COM_CHANGE_USER + session init + SELECT (an account without its limit, or a server not in UTC)',
          mean('switch').toFixed(0),
          4,
          `${(mean('switch') / mean('hit')).toFixed(2)}×`,
        ],
        [
          'no-init: COM_CHANGE_USER + SELECT (today: the account carries MAX_STATEMENT_TIME, the server runs in UTC)',
          mean('no-init').toFixed(0),
          3,
          `${(mean('no-init') / mean('hit')).toFixed(2)}×`,
        ],
        ['role: `SET ROLE r; USE db; SELECT` in one round trip', mean('role').toFixed(0), 1, `${(mean('role') / mean('hit')).toFixed(2)}×`],
      ]),
    ];
    console.log(lines.join('\n'));
    console.error(`wrote ${await writeDocSection('switch', '## What a tenant switch costs', lines)}`);
  } finally {
    for (const c of conns) c.destroy();
    for (const t of tenants) {
      await root.query(`DROP DATABASE IF EXISTS \`${t.database}\``);
      await root.query(`DROP USER IF EXISTS '${t.user}'@'%'`);
      await root.query(`DROP ROLE IF EXISTS \`${t.role}\``);
    }
    await root.query(`DROP USER IF EXISTS '${login.user}'@'%'`);
    await root.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
