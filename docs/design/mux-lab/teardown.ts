/** Drops every muxlab_* database and user (and nothing else).  npx tsx teardown.ts */
import mysql from 'mysql2/promise';
import { HOST, PORT } from './common.js';

async function main() {
  const c = await mysql.createConnection({ host: HOST, port: PORT, user: 'root', password: '' });
  const [dbs] = (await c.query("SELECT SCHEMA_NAME AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'muxlab\\_%'")) as any;
  const [users] = (await c.query("SELECT User AS u, Host AS h FROM mysql.user WHERE User LIKE 'muxlab\\_%'")) as any;
  for (const { n } of dbs) await c.query(`DROP DATABASE \`${n}\``);
  for (const { u, h } of users) await c.query(`DROP USER '${u}'@'${h}'`);
  await c.end();
  console.log(`teardown: dropped ${dbs.length} databases and ${users.length} users`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
