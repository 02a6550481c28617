/** The registry of MySQL servers that hold tenant databases, with one cached admin connection per server. */
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { createSequelize } from '../../platform/db/sequelize.js';
import { conflict, notFound } from '../../platform/lib/errors.js';
import type { SecretBox } from '../../platform/lib/secrets.js';

export interface DbServer {
  id: number;
  name: string;
  host: string;
  port: number;
  adminUser: string;
  capacity: number;
  status: 'active' | 'draining';
  tenants?: number;
}

interface ServerRow {
  id: number;
  name: string;
  host: string;
  port: number;
  admin_user: string;
  admin_password_enc: string;
  capacity: number;
  status: 'active' | 'draining';
  tenants?: number;
}

export const DEFAULT_SERVER = 'default';

export interface ServerRegistry {
  /** Inserts or refreshes the `default` server from the config (DB_HOST, DB_PORT, DB_USER, DB_PASS). */
  ensureDefault(): Promise<DbServer>;
  add(input: { name: string; host: string; port: number; user: string; password: string; capacity?: number }): Promise<DbServer>;
  list(): Promise<DbServer[]>;
  get(id: number): Promise<DbServer>;
  /**
   * The named active server, or the least-loaded active one with room left. Inside `transaction` (READ COMMITTED) the
   * active servers' rows are locked first, so concurrent creates count each other's tenants and never overfill one.
   */
  pickForNewTenant(name?: string, transaction?: Transaction): Promise<DbServer>;
  /** Sets a server's status: `draining` takes no new tenants (its tenants stay), `active` takes them again. */
  setStatus(name: string, status: 'active' | 'draining'): Promise<DbServer>;
  /** A cached admin connection (no default database) to the server. */
  admin(serverId: number): Promise<Sequelize>;
  /** A fresh admin connection to one database on the server (for migrations); caller closes it. */
  adminForDatabase(serverId: number, database: string): Promise<Sequelize>;
  /**
   * A fresh admin session on the server: one physical connection (pool of 1), no default database, so `USE` sticks
   * (fleet migrations switch it from tenant to tenant). The caller closes it.
   */
  adminSession(serverId: number): Promise<Sequelize>;
  /** Decrypted admin credentials and address (for a tenant pool's host/port). */
  endpoint(serverId: number): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
}

const SELECT = `SELECT s.*, (SELECT COUNT(*) FROM orgs o WHERE o.db_server_id = s.id AND o.status <> 'DELETED') AS tenants FROM db_servers s`;

/** Creates the server registry over the shared DB. */
export function createServerRegistry(deps: { sharedDb: Sequelize; secrets: SecretBox; config: Config }): ServerRegistry {
  const { sharedDb, secrets, config } = deps;
  const admins = new Map<number, Promise<Sequelize>>();
  const rows = new Map<number, ServerRow>();

  const toServer = (r: ServerRow): DbServer => ({
    id: r.id,
    name: r.name,
    host: r.host,
    port: r.port,
    adminUser: r.admin_user,
    capacity: r.capacity,
    status: r.status,
    ...(r.tenants === undefined ? {} : { tenants: Number(r.tenants) }),
  });

  async function row(id: number): Promise<ServerRow> {
    const cached = rows.get(id);
    if (cached) return cached;
    const [r] = await sharedDb.query<ServerRow>(`${SELECT} WHERE s.id = :id`, { replacements: { id }, type: QueryTypes.SELECT });
    if (!r) throw notFound('SERVER_NOT_FOUND', `db server ${id} does not exist`);
    rows.set(id, r);
    return r;
  }

  async function byName(name: string, transaction?: Transaction): Promise<ServerRow | undefined> {
    const [r] = await sharedDb.query<ServerRow>(`${SELECT} WHERE s.name = :name`, {
      replacements: { name },
      type: QueryTypes.SELECT,
      transaction,
    });
    return r;
  }

  const connect = (r: ServerRow, database?: string, poolMax = 2) =>
    createSequelize({
      host: r.host,
      port: r.port,
      user: r.admin_user,
      password: secrets.decrypt(r.admin_password_enc),
      database,
      poolMax,
      connectTimeoutMs: config.tenant.connectTimeoutMs,
      idleMs: 30_000,
    });

  return {
    async ensureDefault() {
      const { host, port, user, password } = config.db;
      await sharedDb.query(
        `INSERT INTO db_servers (name, host, port, admin_user, admin_password_enc) VALUES (:name, :host, :port, :user, :enc)
         ON DUPLICATE KEY UPDATE host = VALUES(host), port = VALUES(port), admin_user = VALUES(admin_user),
           admin_password_enc = VALUES(admin_password_enc), updated_at = CURRENT_TIMESTAMP(3)`,
        { replacements: { name: DEFAULT_SERVER, host, port, user, enc: secrets.encrypt(password) } },
      );
      rows.clear();
      return toServer((await byName(DEFAULT_SERVER))!);
    },
    async add(input) {
      if (await byName(input.name)) throw conflict('SERVER_EXISTS', `a db server named ${input.name} already exists`);
      await sharedDb.query(
        `INSERT INTO db_servers (name, host, port, admin_user, admin_password_enc, capacity) VALUES (:name, :host, :port, :user, :enc, :capacity)`,
        { replacements: { ...input, enc: secrets.encrypt(input.password), capacity: input.capacity ?? 10000 } },
      );
      return toServer((await byName(input.name))!);
    },
    async list() {
      return (await sharedDb.query<ServerRow>(`${SELECT} ORDER BY s.id`, { type: QueryTypes.SELECT })).map(toServer);
    },
    async get(id) {
      return toServer(await row(id));
    },
    async pickForNewTenant(name, transaction) {
      if (transaction) await sharedDb.query("SELECT id FROM db_servers WHERE status = 'active' ORDER BY id FOR UPDATE", { transaction });
      if (name) {
        const r = await byName(name, transaction);
        if (!r) throw notFound('SERVER_NOT_FOUND', `no db server named ${name}`);
        if (r.status !== 'active') throw conflict('SERVER_DRAINING', `db server ${name} is ${r.status}`);
        if (Number(r.tenants) >= r.capacity) throw conflict('NO_SERVER_CAPACITY', `db server ${name} is full (${r.capacity} tenants)`);
        return toServer(r);
      }
      const candidates = (await sharedDb.query<ServerRow>(`${SELECT} WHERE s.status = 'active'`, { type: QueryTypes.SELECT, transaction }))
        .filter((r) => Number(r.tenants) < r.capacity)
        .sort((a, b) => Number(a.tenants) / a.capacity - Number(b.tenants) / b.capacity || a.id - b.id);
      if (!candidates[0]) throw conflict('NO_SERVER_CAPACITY', 'no active db server has room for another tenant');
      return toServer(candidates[0]);
    },
    async setStatus(name, status) {
      const [, meta] = await sharedDb.query(
        'UPDATE db_servers SET status = :status, updated_at = CURRENT_TIMESTAMP(3) WHERE name = :name',
        {
          replacements: { name, status },
        },
      );
      if ((meta as { affectedRows?: number }).affectedRows === 0 && !(await byName(name)))
        throw notFound('SERVER_NOT_FOUND', `no db server named ${name}`);
      rows.clear();
      return toServer((await byName(name))!);
    },
    admin(serverId) {
      let p = admins.get(serverId);
      if (!p) {
        p = row(serverId).then((r) => connect(r));
        p.catch(() => admins.delete(serverId));
        admins.set(serverId, p);
      }
      return p;
    },
    async adminForDatabase(serverId, database) {
      return connect(await row(serverId), database, 2);
    },
    async adminSession(serverId) {
      return connect(await row(serverId), undefined, 1);
    },
    async endpoint(serverId) {
      const r = await row(serverId);
      return { host: r.host, port: r.port };
    },
    async close() {
      const all = [...admins.values()];
      admins.clear();
      await Promise.allSettled(all.map(async (p) => (await p).close()));
    },
  };
}
