/**
 * What one tenant switch costs on this server, raw mysql2 (no router, no Sequelize): the packets of one COM_CHANGE_USER
 * (MariaDB answers with an AuthSwitchRequest = 2 round trips), sequential latency, and throughput with 20 connections
 * busy at once for: query, ping, changeUser, changeUser+query, COM_RESET_CONNECTION, SET time_zone.  ≤ 21 connections.
 *   npx tsx switch-cost.ts
 */
import { performance } from 'node:perf_hooks';
import mysql from 'mysql2';
import { HOST, PORT, tenant } from './common.js';

const SQL = 'SELECT id, `to`, channel, body, status, cost, created_at FROM messages ORDER BY id DESC LIMIT 20';
const open = (i: number) => new Promise<mysql.Connection>((res, rej) => {
  const t = tenant(i);
  const c = mysql.createConnection({ host: HOST, port: PORT, user: t.user, password: t.password, database: t.database, flags: ['-IGNORE_SPACE'] });
  c.once('connect', () => res(c)); c.once('error', rej);
});
const cb = (f: (done: (e: any) => void) => void) => new Promise<void>((res, rej) => f((e) => (e ? rej(e) : res())));
const change = (c: mysql.Connection, i: number) => { const t = tenant(i % 1000); return cb((d) => c.changeUser({ user: t.user, password: t.password, database: t.database }, d)); };

async function main() {
  const one = await open(0);
  const seen: string[] = [];
  const orig = (one as any).handlePacket.bind(one);
  (one as any).handlePacket = (p: any) => { if (p) seen.push(`0x${p.buffer[p.offset].toString(16)}`); return orig(p); };
  await change(one, 1);
  (one as any).handlePacket = orig;
  console.log(`one COM_CHANGE_USER: server packets ${seen.join(', ')} (0xfe = AuthSwitchRequest, 0x0 = OK) → 2 round trips`);

  const seq = async (label: string, op: (i: number) => Promise<void>, n = 1000) => {
    for (let i = 0; i < 100; i++) await op(i);
    const s = performance.now();
    for (let i = 0; i < n; i++) await op(i);
    console.log(`  sequential ${label}: ${((performance.now() - s) / n * 1000).toFixed(0)} µs`);
  };
  await seq('query            ', () => cb((d) => one.query(SQL, d)));
  await seq('changeUser       ', (i) => change(one, i * 7));
  await seq('changeUser+query ', async (i) => { await change(one, i * 7); await cb((d) => one.query(SQL, d)); });
  await seq('reset            ', () => cb((d) => (one as any).reset(d)));
  await seq("SET time_zone    ", () => cb((d) => one.query("SET time_zone = '+00:00'", d)));
  one.destroy();

  const conns = await Promise.all(Array.from({ length: 20 }, (_, i) => open(i)));
  const par = async (label: string, op: (c: mysql.Connection, k: number, i: number) => Promise<void>, ms = 2500) => {
    let n = 0;
    const end = performance.now() + ms;
    await Promise.all(conns.map(async (c, k) => { let i = 0; while (performance.now() < end) { await op(c, k, i++); n++; } }));
    console.log(`  20 connections ${label}: ${(n / (ms / 1000)).toFixed(0)} ops/s`);
  };
  await par('query            ', (c) => cb((d) => c.query(SQL, d)));
  await par('changeUser       ', (c, k, i) => change(c, k * 37 + i * 101));
  await par('changeUser+query ', async (c, k, i) => { await change(c, k * 37 + i * 101); await cb((d) => c.query(SQL, d)); });
  await par('reset            ', (c) => cb((d) => (c as any).reset(d)));
  await par('query (again)    ', (c) => cb((d) => c.query(SQL, d)));
  conns.forEach((c) => c.destroy());
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
