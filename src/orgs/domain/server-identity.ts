/**
 * What a MySQL server says it is, whatever address reached it: two registry entries (`127.0.0.1` and `localhost`, a
 * DNS alias, a tunnel) can be one physical server, and a move between them would copy a database onto itself.
 *
 * MySQL answers `@@server_uuid` (generated once per data directory). MariaDB has no such variable and its
 * `@@server_id` is 1 on every server that nobody configured, while `@@hostname`, `@@port` and `@@datadir` are equal on
 * look-alike hosts (two containers of one image). So on MariaDB the identity is a random id written once into the
 * server's own table `tenancy_server.identity` (one row): every address that reaches the same server reads the same
 * row. A data directory copied to another host carries the row along (as MySQL's `auto.cnf` does): such a clone must
 * get a new one (`DROP DATABASE tenancy_server`) before it is registered. hostname, port and data directory are kept
 * only to describe the server in messages.
 */
import { randomUUID } from 'node:crypto';
import { QueryTypes, type Sequelize } from 'sequelize';

/** The schema on every MariaDB tenant server that holds its identity row. */
export const IDENTITY_SCHEMA = 'tenancy_server';

export interface ServerIdentity {
  /** `mysql:<server_uuid>` or `marker:<uuid>`: equal for every address of one server, different between servers. */
  uid: string;
  /** hostname:port (data directory), for messages. */
  describe: string;
}

/** Reads (on MariaDB: makes, the first time) the identity of the server `admin` is connected to. */
export async function readServerIdentity(admin: Sequelize): Promise<ServerIdentity> {
  const [where] = await admin.query<{ host: string; port: number; datadir: string }>(
    'SELECT @@hostname AS host, @@port AS port, @@datadir AS datadir',
    { type: QueryTypes.SELECT },
  );
  const describe = `${where?.host}:${where?.port} (${where?.datadir})`;
  const [uuid] = await admin.query<{ Value: string }>("SHOW GLOBAL VARIABLES LIKE 'server_uuid'", { type: QueryTypes.SELECT });
  if (uuid?.Value) return { uid: `mysql:${uuid.Value}`, describe };
  await admin.query(`CREATE DATABASE IF NOT EXISTS ${IDENTITY_SCHEMA}`);
  await admin.query(
    `CREATE TABLE IF NOT EXISTS ${IDENTITY_SCHEMA}.identity (
       id TINYINT UNSIGNED NOT NULL PRIMARY KEY, server_uid CHAR(36) NOT NULL, created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))`,
  );
  // The first writer wins; every later reader (through any address) gets its row.
  await admin.query(`INSERT IGNORE INTO ${IDENTITY_SCHEMA}.identity (id, server_uid) VALUES (1, :uid)`, {
    replacements: { uid: randomUUID() },
  });
  const [row] = await admin.query<{ uid: string }>(`SELECT server_uid AS uid FROM ${IDENTITY_SCHEMA}.identity WHERE id = 1`, {
    type: QueryTypes.SELECT,
  });
  if (!row) throw new Error(`could not read ${IDENTITY_SCHEMA}.identity on ${describe}`);
  return { uid: `marker:${row.uid}`, describe };
}
