/** Root hooks: migrate this run's shared DB once; afterwards drop every database, MySQL user and Redis key of the run. */
import { Redis } from 'ioredis';
import { prepareSharedDb } from '../src/platform/db/shared-db.js';
import { RUN, rootDb, rows, testConfig, testDeps } from './helpers.js';

/** Removes everything this run created. Exported so benchmarks and manual runs can reuse it. */
export async function cleanupRun(run = RUN): Promise<void> {
  if (!/^[A-Za-z0-9]+$/.test(run)) throw new Error(`bad run id ${run}`);
  const db = rootDb();
  try {
    const like = `${run}\\_%`;
    for (const r of await rows<{ name: string }>(
      db,
      'SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :like',
      { like },
    )) {
      await db.query(`DROP DATABASE IF EXISTS \`${r.name.replace(/[^A-Za-z0-9_]/g, '')}\``);
    }
    for (const u of await rows<{ User: string; Host: string }>(db, 'SELECT User, Host FROM mysql.user WHERE User LIKE :like', { like })) {
      await db.query(`DROP USER IF EXISTS ${db.escape(u.User)}@${db.escape(u.Host)}`);
    }
  } finally {
    await db.close();
  }
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (let cursor = '0'; ;) {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${run}*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    redis.disconnect();
  }
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(60_000);
    const deps = testDeps({}, { subscribe: false });
    try {
      await prepareSharedDb(testConfig(), deps.sharedDb);
      await deps.servers.ensureDefault();
    } finally {
      await deps.close();
    }
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    if (process.env.KEEP_TEST_DATA !== '1') await cleanupRun();
  },
};
