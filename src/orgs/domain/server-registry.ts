/** The registry of MySQL servers that hold tenant databases, with one cached admin connection per server. */
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { createSequelize } from '../../platform/db/sequelize.js';
import { conflict, describeError, isDuplicateKey, notFound } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { SecretBox } from '../../platform/lib/secrets.js';
import { readServerIdentity, type ServerIdentity } from './server-identity.js';

export interface DbServer {
  id: number;
  name: string;
  host: string;
  port: number;
  adminUser: string;
  capacity: number;
  status: 'active' | 'draining';
  /** What the MySQL server says it is (server-identity.ts); null until it was first reached. */
  serverUid: string | null;
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
  server_uid: string | null;
  tenants?: number;
}

export const DEFAULT_SERVER = 'default';

/** What `servers set` may change. A new address or account must still reach the same server (its identity). */
export interface ServerChange {
  capacity?: number;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
}

export interface ServerRegistry {
  /**
   * Registers the `default` server from the config (DB_HOST, DB_PORT, DB_USER, DB_PASS, DEFAULT_SERVER_CAPACITY) the
   * first time only. Later, a different address or account in the config changes nothing and is logged as a warning
   * (one CLI run through a tunnel must not repoint every tenant); only a rotated DB_PASS for the same address and
   * account, which the shared-DB connection has just proven, is stored.
   */
  ensureDefault(): Promise<DbServer>;
  /** Registers a server; SERVER_DUPLICATE when it is one already registered under another name (by its identity). */
  add(input: { name: string; host: string; port: number; user: string; password: string; capacity?: number }): Promise<DbServer>;
  /** Changes a server's capacity, address or admin account (`bin/tenant servers set`). */
  update(name: string, change: ServerChange): Promise<DbServer>;
  list(): Promise<DbServer[]>;
  /** The ids of the active servers (taking new tenants), or of the named one if active: one cheap, non-locking read. */
  activeIds(name?: string): Promise<number[]>;
  get(id: number): Promise<DbServer>;
  /**
   * The named active server, or the least-loaded active one with room left. Inside `transaction` (READ COMMITTED) the
   * active servers' rows are locked first, so concurrent creates count each other's tenants and never overfill one.
   */
  pickForNewTenant(name?: string, transaction?: Transaction): Promise<DbServer>;
  /** Sets a server's status: `draining` takes no new tenants (its tenants stay), `active` takes them again. */
  setStatus(name: string, status: 'active' | 'draining'): Promise<DbServer>;
  /**
   * The server's identity read now, recorded the first time; SERVER_IDENTITY_CHANGED when its address now reaches
   * another server than the one registered.
   */
  identify(serverId: number): Promise<ServerIdentity>;
  /** A cached admin connection (no default database) to the server. */
  admin(serverId: number): Promise<Sequelize>;
  /** A fresh admin connection to one database on the server (for migrations); caller closes it. */
  adminForDatabase(serverId: number, database: string, poolMax?: number): Promise<Sequelize>;
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
/** What an operator can do about a full fleet, named in every NO_SERVER_CAPACITY. */
const MAKE_ROOM =
  'raise a capacity (bin/tenant servers set <name> --capacity N), activate a drained server (bin/tenant servers activate <name>) or add one (bin/tenant servers add <name> --host H …)';

/** Creates the server registry over the shared DB. */
export function createServerRegistry(deps: { sharedDb: Sequelize; secrets: SecretBox; config: Config; logger?: Logger }): ServerRegistry {
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
    serverUid: r.server_uid ?? null,
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

  async function mustByName(name: string): Promise<ServerRow> {
    const r = await byName(name);
    if (!r) throw notFound('SERVER_NOT_FOUND', `no db server named ${name}`);
    return r;
  }

  const connectTo = (a: { host: string; port: number; user: string; password: string }, database?: string, poolMax = 2) =>
    createSequelize({ ...a, database, poolMax, connectTimeoutMs: config.tenant.connectTimeoutMs, idleMs: 30_000 });
  const connect = (r: ServerRow, database?: string, poolMax = 2) =>
    connectTo({ host: r.host, port: r.port, user: r.admin_user, password: secrets.decrypt(r.admin_password_enc) }, database, poolMax);

  /** The identity of whatever answers at this address with this account (a throw-away connection). */
  async function identityAt(a: { host: string; port: number; user: string; password: string }): Promise<ServerIdentity> {
    const db = connectTo(a, undefined, 1);
    try {
      return await readServerIdentity(db);
    } finally {
      await db.close().catch(() => undefined);
    }
  }

  const duplicate = (name: string, other: string, identity: ServerIdentity) =>
    conflict(
      'SERVER_DUPLICATE',
      `${name} is the same MySQL server as the registered db server ${other} (${identity.describe}, identity ${identity.uid}); a server is registered once`,
    );

  /** Records a server's identity the first time it is read; a unique index refuses a second entry of one server. */
  async function record(r: ServerRow, identity: ServerIdentity): Promise<void> {
    if (r.server_uid === identity.uid) return;
    if (r.server_uid)
      throw conflict(
        'SERVER_IDENTITY_CHANGED',
        `db server ${r.name} (${r.host}:${r.port}) now answers as another MySQL server (${identity.describe}) than the one registered; check its address before anything moves there`,
      );
    try {
      await sharedDb.query('UPDATE db_servers SET server_uid = :uid WHERE id = :id AND server_uid IS NULL', {
        replacements: { id: r.id, uid: identity.uid },
      });
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      const [other] = await sharedDb.query<{ name: string }>('SELECT name FROM db_servers WHERE server_uid = :uid', {
        replacements: { uid: identity.uid },
        type: QueryTypes.SELECT,
      });
      throw duplicate(r.name, other?.name ?? '?', identity);
    }
    rows.delete(r.id);
  }

  function admin(serverId: number): Promise<Sequelize> {
    let p = admins.get(serverId);
    if (!p) {
      p = row(serverId).then((r) => connect(r));
      p.catch(() => admins.delete(serverId));
      admins.set(serverId, p);
    }
    return p;
  }

  function forget(id: number): void {
    rows.delete(id);
    const admin = admins.get(id);
    admins.delete(id);
    void admin?.then((a) => a.close()).catch(() => undefined);
  }

  return {
    async ensureDefault() {
      const { host, port, user, password } = config.db;
      const existing = await byName(DEFAULT_SERVER);
      if (!existing) {
        // The shared DB's own connection reaches this server: its identity, to refuse a second entry of it later.
        const identity = await readServerIdentity(sharedDb).catch(() => undefined);
        await sharedDb.query(
          `INSERT IGNORE INTO db_servers (name, host, port, admin_user, admin_password_enc, capacity, server_uid)
           VALUES (:name, :host, :port, :user, :enc, :capacity, :uid)`,
          {
            replacements: {
              name: DEFAULT_SERVER,
              host,
              port,
              user,
              enc: secrets.encrypt(password),
              capacity: config.defaultServerCapacity,
              uid: identity?.uid ?? null,
            },
          },
        );
        return toServer((await byName(DEFAULT_SERVER))!);
      }
      if (existing.host !== host || existing.port !== port || existing.admin_user !== user) {
        deps.logger?.warn(
          `the default db server is registered as ${existing.admin_user}@${existing.host}:${existing.port}, but DB_HOST/DB_PORT/DB_USER say ${user}@${host}:${port}: nothing was changed, and tenants on the default server are reached at the registered address. If the server really moved, run: bin/tenant servers set default --host H --port P --user U --password-env VAR`,
          { server: DEFAULT_SERVER },
        );
      } else if (secrets.decrypt(existing.admin_password_enc) !== password) {
        // Same server, same account, and the shared-DB connection has just logged in with this password: a rotation.
        await sharedDb.query('UPDATE db_servers SET admin_password_enc = :enc, updated_at = CURRENT_TIMESTAMP(3) WHERE id = :id', {
          replacements: { id: existing.id, enc: secrets.encrypt(password) },
        });
        forget(existing.id);
      }
      return toServer(existing);
    },
    async add(input) {
      if (await byName(input.name)) throw conflict('SERVER_EXISTS', `a db server named ${input.name} already exists`);
      const identity = await identityAt(input).catch((err: unknown) => {
        deps.logger?.warn('servers add: the server could not be reached to read its identity; it is checked before any move', {
          server: input.name,
          err: describeError(err),
        });
        return undefined;
      });
      if (identity) {
        // Entries registered before identities existed (or unreachable then) are identified now, where possible.
        const unknown = await sharedDb.query<ServerRow>('SELECT * FROM db_servers WHERE server_uid IS NULL', { type: QueryTypes.SELECT });
        for (const r of unknown) {
          const theirs = await identityAt({
            host: r.host,
            port: r.port,
            user: r.admin_user,
            password: secrets.decrypt(r.admin_password_enc),
          }).catch(() => undefined);
          if (theirs?.uid === identity.uid) throw duplicate(input.name, r.name, identity);
          if (theirs) await record(r, theirs).catch(() => undefined);
        }
        const [other] = await sharedDb.query<{ name: string }>('SELECT name FROM db_servers WHERE server_uid = :uid', {
          replacements: { uid: identity.uid },
          type: QueryTypes.SELECT,
        });
        if (other) throw duplicate(input.name, other.name, identity);
      }
      try {
        await sharedDb.query(
          `INSERT INTO db_servers (name, host, port, admin_user, admin_password_enc, capacity, server_uid)
           VALUES (:name, :host, :port, :user, :enc, :capacity, :uid)`,
          {
            replacements: {
              ...input,
              enc: secrets.encrypt(input.password),
              capacity: input.capacity ?? 10000,
              uid: identity?.uid ?? null,
            },
          },
        );
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        if (await byName(input.name)) throw conflict('SERVER_EXISTS', `a db server named ${input.name} already exists`);
        throw duplicate(input.name, 'registered meanwhile', identity!);
      }
      return toServer((await byName(input.name))!);
    },
    async update(name, change) {
      const r = await mustByName(name);
      const sets: string[] = [];
      const replacements: Record<string, unknown> = { id: r.id };
      if (change.capacity !== undefined) {
        sets.push('capacity = :capacity');
        replacements.capacity = change.capacity;
      }
      const moved = change.host !== undefined || change.port !== undefined || change.user !== undefined || change.password !== undefined;
      if (moved) {
        const next = {
          host: change.host ?? r.host,
          port: change.port ?? r.port,
          user: change.user ?? r.admin_user,
          password: change.password ?? secrets.decrypt(r.admin_password_enc),
        };
        // Its tenants' databases are where they are: the new address must reach that very server.
        const registered =
          r.server_uid ??
          (await identityAt({ host: r.host, port: r.port, user: r.admin_user, password: secrets.decrypt(r.admin_password_enc) })
            .then((i) => i.uid)
            .catch(() => null));
        const now = await identityAt(next);
        if (registered === null && Number(r.tenants) > 0)
          throw conflict(
            'SERVER_IDENTITY_UNKNOWN',
            `db server ${name} has tenants and its registered address cannot be reached to confirm that ${next.host}:${next.port} is the same server; nothing was changed`,
          );
        if (registered !== null && registered !== now.uid)
          throw conflict(
            'SERVER_IDENTITY_CHANGED',
            `${next.host}:${next.port} is another MySQL server (${now.describe}) than db server ${name}; its tenants' databases are not there, nothing was changed`,
          );
        sets.push('host = :host', 'port = :port', 'admin_user = :user', 'admin_password_enc = :enc', 'server_uid = :uid');
        Object.assign(replacements, {
          host: next.host,
          port: next.port,
          user: next.user,
          enc: secrets.encrypt(next.password),
          uid: now.uid,
        });
      }
      if (sets.length) {
        await sharedDb.query(`UPDATE db_servers SET ${sets.join(', ')}, updated_at = CURRENT_TIMESTAMP(3) WHERE id = :id`, {
          replacements,
        });
        forget(r.id);
      }
      return toServer(await mustByName(name));
    },
    async list() {
      return (await sharedDb.query<ServerRow>(`${SELECT} ORDER BY s.id`, { type: QueryTypes.SELECT })).map(toServer);
    },
    async activeIds(name) {
      const rows = await sharedDb.query<{ id: number }>(
        `SELECT id FROM db_servers WHERE status = 'active'${name === undefined ? '' : ' AND name = :name'} ORDER BY id`,
        { replacements: { name: name ?? null }, type: QueryTypes.SELECT },
      );
      return rows.map((r) => Number(r.id));
    },
    async get(id) {
      return toServer(await row(id));
    },
    async pickForNewTenant(name, transaction) {
      if (transaction) await sharedDb.query("SELECT id FROM db_servers WHERE status = 'active' ORDER BY id FOR UPDATE", { transaction });
      if (name) {
        const r = await byName(name, transaction);
        if (!r) throw notFound('SERVER_NOT_FOUND', `no db server named ${name}`);
        if (r.status !== 'active')
          throw conflict(
            'SERVER_DRAINING',
            `db server ${name} is ${r.status}; take tenants there again with bin/tenant servers activate ${name}`,
          );
        if (Number(r.tenants) >= r.capacity)
          throw conflict(
            'NO_SERVER_CAPACITY',
            `db server ${name} is full (${r.tenants} of ${r.capacity} tenants): raise its capacity with bin/tenant servers set ${name} --capacity N, or pick another server`,
          );
        return toServer(r);
      }
      const candidates = (await sharedDb.query<ServerRow>(`${SELECT} WHERE s.status = 'active'`, { type: QueryTypes.SELECT, transaction }))
        .filter((r) => Number(r.tenants) < r.capacity)
        .sort((a, b) => Number(a.tenants) / a.capacity - Number(b.tenants) / b.capacity || a.id - b.id);
      if (!candidates[0]) throw conflict('NO_SERVER_CAPACITY', `no active db server has room for another tenant: ${MAKE_ROOM}`);
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
    async identify(serverId) {
      rows.delete(serverId);
      const r = await row(serverId);
      const identity = await readServerIdentity(await admin(serverId));
      await record(r, identity);
      return identity;
    },
    admin,
    async adminForDatabase(serverId, database, poolMax = 2) {
      return connect(await row(serverId), database, poolMax);
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
