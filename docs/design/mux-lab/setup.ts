/**
 * Creates TENANTS databases muxlab_t<i>, each with a small `messages` table (the app's shape) and a user muxlab_u<i>
 * that has ALL on its own database only. Idempotent. 4 root connections.  npx tsx setup.ts
 */
import mysql from 'mysql2/promise';
import { HOST, PORT, ROWS_PER_TENANT, TENANTS, tenant } from './common.js';

const DDL = `CREATE TABLE IF NOT EXISTS messages (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  \`to\` VARCHAR(320) NOT NULL,
  channel VARCHAR(8) NOT NULL,
  body MEDIUMTEXT NOT NULL,
  status VARCHAR(16) NOT NULL DEFAULT 'QUEUED',
  cost INT UNSIGNED NOT NULL,
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  error_code VARCHAR(64) NULL,
  error_text VARCHAR(1000) NULL,
  provider_message_id VARCHAR(255) NULL,
  idempotency_key VARCHAR(255) NULL,
  request_hash CHAR(64) NULL,
  created_at DATETIME(3) NOT NULL,
  updated_at DATETIME(3) NOT NULL,
  sent_at DATETIME(3) NULL
) ENGINE=InnoDB`;

async function main() {
  const pool = mysql.createPool({ host: HOST, port: PORT, user: 'root', password: '', connectionLimit: 4, multipleStatements: true });
  const started = Date.now();
  let next = 0;
  const rows = Array.from({ length: ROWS_PER_TENANT }, (_, r) =>
    `('+1555000${String(r).padStart(4, '0')}', 'sms', 'hello ${r} from the lab', 'SENT', 1, 1, NOW(3), NOW(3), NOW(3))`).join(',');
  async function lane() {
    for (;;) {
      const i = next++;
      if (i >= TENANTS) return;
      const t = tenant(i);
      await pool.query(
        `CREATE DATABASE IF NOT EXISTS \`${t.database}\`;
         CREATE USER IF NOT EXISTS '${t.user}'@'%' IDENTIFIED BY '${t.password}';
         GRANT ALL PRIVILEGES ON \`${t.database}\`.* TO '${t.user}'@'%';
         USE \`${t.database}\`; ${DDL};`,
      );
      const [[c]] = (await pool.query(`SELECT COUNT(*) AS n FROM \`${t.database}\`.messages`)) as any;
      if (Number(c.n) === 0) {
        await pool.query(`INSERT INTO \`${t.database}\`.messages (\`to\`, channel, body, status, cost, attempts, created_at, updated_at, sent_at) VALUES ${rows}`);
      }
      if (i % 100 === 99) console.error(`  ${i + 1} tenants (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    }
  }
  await Promise.all([lane(), lane(), lane(), lane()]);
  await pool.end();
  console.log(`setup: ${TENANTS} tenants ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
