/**
 * Tenant provisioning as a resumable state machine:
 * CREATE_DATABASE → CREATE_USER → MIGRATE → CREATE_API_KEY → (ACTIVE).
 * Each step is idempotent; a failure records the step and the error and leaves the org FAILED, and
 * `provision(id)` resumes from the recorded step.
 */
import { QueryTypes, Transaction, type Sequelize } from 'sequelize';
import type { Config } from '../../../config/config.js';
import type { Ledger } from '../data-access/ledger.js';
import { LockTimeoutError, TENANT_MIGRATIONS_DIR, createMigrator, withLock, withMigrationLock } from '../../platform/db/migrator.js';
import { AppError, conflict, describeError, isDuplicateKey, notFound } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import { generateApiKey, randomPassword, type SecretBox } from '../../platform/lib/secrets.js';
import { createSequelize, serverVersion } from '../../platform/db/sequelize.js';
import { tenantAccountLimits } from '../../platform/tenant-connections/tenant-connections.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';
import { mapWithConcurrency } from '../../platform/lib/concurrency.js';
import { tenantDbName, tenantDbUser } from './tenant-names.js';
import { killSessionsOf } from './tenant-sessions.js';
import { MIGRATABLE_STATUSES, isOperational, isProvisioned, provisioned, type OrgRecord, type ProvisionedOrg } from './org.js';
import type { OrgRepository } from '../data-access/org.repository.js';
import type { SchemaVersions } from '../data-access/schema-versions.js';
import type { ServerRegistry } from './server-registry.js';

export const PROVISIONING_STEPS = ['CREATE_DATABASE', 'CREATE_USER', 'MIGRATE', 'CREATE_API_KEY'] as const;
export type ProvisioningStep = (typeof PROVISIONING_STEPS)[number];

/** The table, in every tenant DB, that says which org (by uid) owns it. */
export const OWNER_TABLE = 'tenancy_owner';

/** The table a move writes into the copy it makes, with its random id: the move drops no database without it. */
export const COPY_TABLE = 'tenancy_copy';

/** MySQL/MariaDB: "Can't create database; database exists". */
const ER_DB_CREATE_EXISTS = 1007;
const EMPTY = Symbol('empty database');

const errnoOf = (err: unknown): number | undefined => {
  const e = err as { errno?: number; original?: { errno?: number }; parent?: { errno?: number } };
  return e.original?.errno ?? e.parent?.errno ?? e.errno;
};

/** The copy id in `dbName` on that server: undefined without the database, EMPTY with no table at all, null unmarked. */
async function copyMarkOf(admin: Sequelize, dbName: string): Promise<string | null | undefined | typeof EMPTY> {
  const [schema] = await admin.query('SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :db', {
    replacements: { db: dbName },
    type: QueryTypes.SELECT,
  });
  if (!schema) return undefined;
  const tables = await admin.query<{ name: string }>('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db', {
    replacements: { db: dbName },
    type: QueryTypes.SELECT,
  });
  if (tables.length === 0) return EMPTY;
  if (!tables.some((t) => t.name === COPY_TABLE)) return null;
  const [row] = await admin.query<{ copy_uid: string }>(`SELECT copy_uid FROM ${quoteIdentifier(dbName)}.${COPY_TABLE} LIMIT 1`, {
    type: QueryTypes.SELECT,
  });
  return row?.copy_uid ?? null;
}

/** Privileges of a tenant's own user: data only, on its own database only. Migrations run as the server admin. */
export const TENANT_PRIVILEGES = 'SELECT, INSERT, UPDATE, DELETE';

export interface ProvisionResult {
  org: OrgRecord;
  /** The first API key, when this run created it (shown once). */
  apiKey?: string;
}

/** What `accounts sync` did on each server: accounts visited, the limits set (none on MySQL), and those that failed. */
export interface AccountSyncResult {
  servers: {
    server: string;
    accounts: number;
    limits: string | null;
    failed: { orgId: number; error: string }[];
    /** The server could not be reached (nothing done there). */
    error: string | null;
  }[];
}

export interface ProvisionerDeps {
  config: Config;
  repo: OrgRepository;
  servers: ServerRegistry;
  ledger: Ledger;
  secrets: SecretBox;
  logger: Logger;
  /** The control plane's record of each tenant database's schema version (written after MIGRATE, cleared on removal). */
  versions?: Pick<SchemaVersions, 'record' | 'remove'>;
  /** Test seam: called before each step, may throw to simulate a crash at that step. */
  beforeStep?: (step: ProvisioningStep, orgId: number) => void | Promise<void>;
}

/** `'user'@'host'`, escaped by the driver (DDL takes no placeholders for accounts); the user was pattern-checked. */
export function accountOf(db: Sequelize, user: string, host: string): string {
  return `${db.escape(user)}@${db.escape(host)}`;
}

/**
 * The `db.*` of a GRANT. In a GRANT's database name `_` and `%` are wildcards: `tenant_1` would also match
 * `tenantX1`. Escaping them grants exactly one database.
 */
export function grantTarget(dbName: string): string {
  return `${quoteIdentifier(dbName).replace(/[_%]/g, (c) => `\\${c}`)}.*`;
}

/**
 * Whose database `org.dbName` is: `own` (it carries this org's marker), `empty` (absent, or created with nothing in
 * it yet — a crash right after CREATE DATABASE), or `foreign` (anything else: never touched).
 */
async function ownership(admin: Sequelize, org: ProvisionedOrg): Promise<'own' | 'empty' | 'foreign'> {
  const tables = await admin.query<{ name: string }>('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db', {
    replacements: { db: org.dbName },
    type: QueryTypes.SELECT,
  });
  if (tables.length === 0) return 'empty';
  if (!tables.some((t) => t.name === OWNER_TABLE)) return 'foreign';
  const [row] = await admin.query<{ org_uid: string }>(`SELECT org_uid FROM ${quoteIdentifier(org.dbName)}.${OWNER_TABLE} LIMIT 1`, {
    type: QueryTypes.SELECT,
  });
  return row?.org_uid === org.uid ? 'own' : 'foreign';
}

export function createProvisioner(deps: ProvisionerDeps) {
  const { config, repo, servers, ledger, secrets, logger } = deps;

  /** Migrates the org's database up to `to` (a migration's name; the latest without) and records its version. */
  async function migrate(org: ProvisionedOrg, to?: string): Promise<void> {
    const db = await servers.adminForDatabase(org.dbServerId, org.dbName);
    try {
      const migrator = createMigrator({ sequelize: db, dir: config.tenantMigrationsDir ?? TENANT_MIGRATIONS_DIR });
      await withMigrationLock(db, org.dbName, config.migrationLockWaitSec, () => (to ? migrator.up({ to }) : migrator.up()));
      // A new tenant (or a moved tenant's new copy) is at the latest version: the fleet status knows it at once.
      const version = (await migrator.executed()).at(-1)?.name ?? null;
      await deps.versions?.record([{ serverId: org.dbServerId, dbName: org.dbName, orgId: org.id, version }]);
    } finally {
      await db.close();
    }
  }

  const steps: Record<ProvisioningStep, (org: ProvisionedOrg) => Promise<string | undefined>> = {
    async CREATE_DATABASE(org) {
      const admin = await servers.admin(org.dbServerId);
      const db = quoteIdentifier(org.dbName);
      await admin.query(`CREATE DATABASE IF NOT EXISTS ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
      // Never adopt a database this org did not create (another deployment with the same prefix, or org ids that
      // repeat after the shared DB was restored).
      const owner = await ownership(admin, org);
      if (owner === 'own') return undefined;
      if (owner === 'foreign')
        throw conflict('TENANT_DB_EXISTS', `database ${org.dbName} already exists and does not belong to this org; it was left untouched`);
      await admin.query(`CREATE TABLE ${db}.${OWNER_TABLE} (org_id INT UNSIGNED NOT NULL, org_uid CHAR(36) NOT NULL PRIMARY KEY)`);
      await admin.query(`INSERT INTO ${db}.${OWNER_TABLE} (org_id, org_uid) VALUES (:id, :uid)`, {
        replacements: { id: org.id, uid: org.uid },
      });
      return undefined;
    },
    async CREATE_USER(org) {
      const admin = await servers.admin(org.dbServerId);
      const password = secrets.decrypt(org.dbPasswordEnc);
      const account = accountOf(admin, org.dbUser, config.tenant.userHost);
      try {
        await admin.query(`CREATE USER IF NOT EXISTS ${account} IDENTIFIED BY :password`, { replacements: { password } });
        // Re-running after a crash must converge on the stored password and the exact grants.
        // The account carries its statement limit (MariaDB): its sessions, new or switched to it, need no init.
        const limits = tenantAccountLimits(await serverVersion(admin), config.tenantStatementTimeoutMs);
        await admin.query(`ALTER USER ${account} IDENTIFIED BY :password${limits}`, { replacements: { password } });
        // Exactly these grants, whatever the account had before (an older grant, a manual change).
        await admin.query(`REVOKE ALL PRIVILEGES, GRANT OPTION FROM ${account}`);
        await admin.query(`GRANT ${TENANT_PRIVILEGES} ON ${grantTarget(org.dbName)} TO ${account}`);
      } catch (err) {
        // The driver's error quotes the statement, password included: keep only a redacted copy, never the cause.
        // eslint-disable-next-line preserve-caught-error
        throw new Error(describeError(err).split(password).join('[redacted]'));
      }
      return undefined;
    },
    async MIGRATE(org) {
      await migrate(org);
      return undefined;
    },
    async CREATE_API_KEY(org) {
      // One transaction: the first key and ACTIVE land together, so a resumed run never makes a second first key.
      const db = repo.sequelize;
      return db.transaction(async (transaction) => {
        const current = await repo.get(org.id, transaction);
        if (current?.status === 'ACTIVE' || current?.status === 'POOLED') return undefined;
        // A warm-pool tenant is ready, and no one's yet: its key is made by the create that claims it.
        if (current?.pooledSince) {
          await repo.update(org.id, { status: 'POOLED', provisioningStep: null, lastError: null }, transaction);
          return undefined;
        }
        let key: string | undefined;
        if ((await repo.countActiveKeys(org.id, transaction)) === 0) {
          const k = generateApiKey();
          await repo.insertKey({ orgId: org.id, prefix: k.prefix, keyHash: k.hash, name: 'default' }, transaction);
          key = k.key;
        }
        await repo.update(org.id, { status: 'ACTIVE', provisioningStep: null, lastError: null }, transaction);
        return key;
      });
    },
  };

  /** One provisioning run at a time per org, across processes (a concurrent resume waits, then sees the result). */
  async function run(orgId: number): Promise<ProvisionResult> {
    // The lock holds a connection for the whole run: its own, so concurrent runs never starve the shared pool.
    const lockDb = createSequelize({ ...config.db, database: config.db.name, poolMax: 1, connectTimeoutMs: 3000 });
    try {
      return await withLock(lockDb, `tenancy:provision:${config.db.name}:${orgId}`, config.migrationLockWaitSec, () => runLocked(orgId));
    } catch (err) {
      if (err instanceof LockTimeoutError)
        throw conflict('PROVISIONING_IN_PROGRESS', `org ${orgId} is being provisioned by another process`);
      throw err;
    } finally {
      await lockDb.close();
    }
  }

  async function runLocked(orgId: number): Promise<ProvisionResult> {
    let org = await repo.get(orgId);
    if (!org) throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
    if (isOperational(org) || org.status === 'POOLED') return { org };
    if (org.status === 'DELETED') throw conflict('ORG_DELETED', `org ${orgId} was dropped`);
    let index = Math.max(0, PROVISIONING_STEPS.indexOf((org.provisioningStep ?? 'CREATE_DATABASE') as ProvisioningStep));
    await repo.update(orgId, { status: 'PROVISIONING', lastError: null });
    let apiKey: string | undefined;
    for (; index < PROVISIONING_STEPS.length; index++) {
      const step = PROVISIONING_STEPS[index]!;
      await repo.update(orgId, { provisioningStep: step });
      try {
        await deps.beforeStep?.(step, orgId);
        apiKey = (await steps[step](provisioned(org))) ?? apiKey;
      } catch (err) {
        const reason = describeError(err);
        await repo.update(orgId, { status: 'FAILED', lastError: `${step}: ${reason}`.slice(0, 2000) });
        logger.error('tenant provisioning failed', { orgId, step, err: reason });
        throw new AppError({
          code: 'PROVISIONING_FAILED',
          status: 500,
          message: `provisioning failed at ${step}; resume with: bin/tenant provision ${orgId}`,
          details: { orgId, step },
          cause: err,
        });
      }
      logger.info('tenant provisioning step done', { orgId, step });
    }
    org = (await repo.get(orgId))!;
    return apiKey ? { org, apiKey } : { org };
  }

  /**
   * Places, inserts (`insert`) and names a new org in one transaction: a crash can never leave an org without its
   * database name and password, and concurrent creates see each other's tenants (READ COMMITTED after locking the
   * servers' rows).
   */
  async function register(server: string | undefined, insert: (serverId: number, transaction: Transaction) => Promise<number>) {
    const prefix = config.tenant.dbPrefix;
    return repo.sequelize.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED }, async (transaction) => {
      const picked = await servers.pickForNewTenant(server, transaction);
      const orgId = await insert(picked.id, transaction);
      await repo.update(
        orgId,
        { dbName: tenantDbName(prefix, orgId), dbUser: tenantDbUser(prefix, orgId), dbPasswordEnc: secrets.encrypt(randomPassword()) },
        transaction,
      );
      return orgId;
    });
  }

  async function removeDatabase(org: ProvisionedOrg, serverId: number): Promise<boolean> {
    const admin = await servers.admin(serverId);
    if ((await ownership(admin, org)) === 'foreign') return false;
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(org.dbName)}`);
    await admin.query(`DROP USER IF EXISTS ${accountOf(admin, org.dbUser, config.tenant.userHost)}`);
    await deps.versions?.remove(serverId, org.dbName);
    return true;
  }

  /** Runs fn holding the org's provisioning lock: provisioning, drop, undrop and purge never interleave. */
  async function withOrgLock<T>(orgId: number, fn: () => Promise<T>): Promise<T> {
    const lockDb = createSequelize({ ...config.db, database: config.db.name, poolMax: 1, connectTimeoutMs: 3000 });
    try {
      return await withLock(lockDb, `tenancy:provision:${config.db.name}:${orgId}`, config.migrationLockWaitSec, fn);
    } catch (err) {
      if (err instanceof LockTimeoutError) throw conflict('PROVISIONING_IN_PROGRESS', `org ${orgId} is being changed by another process`);
      throw err;
    } finally {
      await lockDb.close();
    }
  }

  /** Locks (ending its sessions) or unlocks the org's MySQL user, if the database is its own (a foreign one: left alone). */
  async function setLocked(org: ProvisionedOrg, locked: boolean): Promise<void> {
    const admin = await servers.admin(org.dbServerId);
    if ((await ownership(admin, org)) === 'foreign') {
      logger.warn('the database of this name belongs to someone else; its user is left untouched', { orgId: org.id, db: org.dbName });
      return;
    }
    const account = accountOf(admin, org.dbUser, config.tenant.userHost);
    const [user] = await admin.query('SELECT 1 FROM mysql.user WHERE User = :user AND Host = :host', {
      replacements: { user: org.dbUser, host: config.tenant.userHost },
      type: QueryTypes.SELECT,
    });
    if (!user) return; // provisioning stopped before CREATE_USER
    await admin.query(`ALTER USER ${account} ACCOUNT ${locked ? 'LOCK' : 'UNLOCK'}`);
    if (locked) await killSessionsOf(admin, org.dbUser);
  }

  /** The purge itself (under the org's lock): database and user (if its own), keys, secrets; the org row and ledger stay. */
  async function purgeLocked(orgId: number): Promise<OrgRecord> {
    const org = (await repo.get(orgId))!;
    if (org.purgedAt) return org;
    if (isProvisioned(org)) {
      const admin = await servers.admin(org.dbServerId);
      if ((await ownership(admin, org)) !== 'foreign') await killSessionsOf(admin, org.dbUser);
      if (!(await removeDatabase(org, org.dbServerId)))
        logger.warn('purge: the database of this name belongs to someone else; left untouched', { orgId, db: org.dbName });
    }
    await repo.sequelize.transaction(async (transaction) => {
      await repo.sequelize.query('DELETE FROM api_keys WHERE org_id = :id', { replacements: { id: orgId }, transaction });
      await repo.sequelize.query(
        `UPDATE orgs SET purged_at = CURRENT_TIMESTAMP(3), db_password_enc = NULL, webhook_secret_enc = NULL, updated_at = CURRENT_TIMESTAMP(3)
         WHERE id = :id`,
        { replacements: { id: orgId }, transaction },
      );
    });
    return (await repo.get(orgId))!;
  }

  /**
   * Gives every tenant account the limits its sessions rely on (tenantAccountLimits): accounts made before they
   * existed, or after TENANT_STATEMENT_TIMEOUT_MS changed. Idempotent, one ALTER USER per account (IF EXISTS: an
   * account not made yet is made with them); `concurrency` at once per server.
   */
  async function syncAccounts(opts: { concurrency: number; server?: string }): Promise<AccountSyncResult> {
    const all = await servers.list();
    const chosen = opts.server === undefined ? all : all.filter((x) => x.name === opts.server);
    if (chosen.length === 0) throw notFound('SERVER_NOT_FOUND', `no server named ${JSON.stringify(opts.server)}`);
    const byServer = new Map<number, ProvisionedOrg[]>(chosen.map((x) => [x.id, []]));
    for (let after = 0; ;) {
      const page = await repo.list({ limit: 1000, after, statuses: [...MIGRATABLE_STATUSES, 'DELETED'] });
      if (page.length === 0) break;
      after = page.at(-1)!.id;
      for (const org of page) if (isProvisioned(org) && !org.purgedAt) byServer.get(org.dbServerId)?.push(org);
    }
    // Servers side by side; a server that cannot be reached is reported, the others are still done.
    const results = await Promise.all(
      chosen.map(async ({ id, name }) => {
        const orgs = byServer.get(id)!;
        const failed: { orgId: number; error: string }[] = [];
        try {
          const admin = await servers.admin(id);
          const limits = tenantAccountLimits(await serverVersion(admin), config.tenantStatementTimeoutMs);
          if (limits)
            await mapWithConcurrency(orgs, opts.concurrency, async (org) => {
              const account = accountOf(admin, org.dbUser, config.tenant.userHost);
              await admin.query(`ALTER USER IF EXISTS ${account}${limits}`).catch((err: unknown) => {
                failed.push({ orgId: org.id, error: describeError(err) });
              });
            });
          return { server: name, accounts: orgs.length, limits: limits.trim() || null, failed, error: null };
        } catch (err) {
          return { server: name, accounts: orgs.length, limits: null, failed, error: describeError(err) };
        }
      }),
    );
    return { servers: results };
  }

  return {
    syncAccounts,
    /** Registers a new org (PROVISIONING), grants its initial credits and provisions it. */
    async create(input: { name: string; credits: number; server?: string }): Promise<ProvisionResult> {
      let id: number;
      try {
        id = await register(input.server, async (serverId, transaction) => {
          const orgId = await repo.insert({ name: input.name, dbServerId: serverId }, transaction);
          if (input.credits > 0)
            await ledger.apply({ orgId, kind: 'grant', amount: input.credits, reference: 'initial-grant', transaction });
          return orgId;
        });
      } catch (err) {
        if (isDuplicateKey(err)) throw conflict('ORG_NAME_TAKEN', `an org named ${JSON.stringify(input.name)} already exists`);
        throw err;
      }
      return run(id);
    },
    /**
     * Provisions a warm-pool tenant on a server (capacity and status checked as for any new tenant): an org row first,
     * so nothing it makes is ever without an owner, then the usual steps, ending POOLED instead of ACTIVE (no key).
     */
    async createPooled(server: string): Promise<OrgRecord> {
      const id = await register(server, (serverId, transaction) => repo.insertPooled(serverId, transaction));
      return (await run(id)).org;
    },
    /** Resumes (or re-checks) provisioning of an existing org. */
    provision: run,
    /**
     * Offboards the org: marked DELETED (the API refuses it like an unknown org), its MySQL user locked and its sessions
     * ended, its database kept for TENANT_RETENTION_DAYS (0: purged at once). `undrop` brings it back as it was.
     */
    async drop(orgId: number): Promise<OrgRecord> {
      return withOrgLock(orgId, async () => {
        const org = await repo.get(orgId);
        if (!org) throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
        if (org.status === 'DELETED') return org;
        if (isProvisioned(org)) await setLocked(org, true);
        await repo.sequelize.query(
          `UPDATE orgs SET status_before_drop = status, status = 'DELETED', dropped_at = CURRENT_TIMESTAMP(3), updated_at = CURRENT_TIMESTAMP(3)
           WHERE id = :id AND status <> 'DELETED'`,
          { replacements: { id: orgId } },
        );
        if (config.retentionDays === 0) return purgeLocked(orgId);
        return (await repo.get(orgId))!;
      });
    },
    /** A dropped org back as it was before the drop (its status, database, user unlocked, keys): until it is purged. */
    async undrop(orgId: number): Promise<OrgRecord> {
      return withOrgLock(orgId, async () => {
        const org = await repo.get(orgId);
        if (!org) throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
        if (org.status !== 'DELETED') throw conflict('ORG_NOT_DROPPED', `org ${orgId} is ${org.status}, not dropped`);
        if (org.purgedAt)
          throw conflict('ORG_PURGED', `org ${orgId} was purged at ${org.purgedAt.toISOString()}: its database and keys are gone`);
        if (isProvisioned(org)) await setLocked(org, false);
        await repo.sequelize.query(
          `UPDATE orgs SET status = COALESCE(status_before_drop, 'ACTIVE'), status_before_drop = NULL, dropped_at = NULL,
             updated_at = CURRENT_TIMESTAMP(3)
           WHERE id = :id AND status = 'DELETED' AND purged_at IS NULL`,
          { replacements: { id: orgId } },
        );
        return (await repo.get(orgId))!;
      });
    },
    /**
     * Removes a dropped org's database, MySQL user and API keys for good (its webhook secret and database password too).
     * The org's row and its ledger stay (docs/operations.md, Offboarding). Refused unless dropped first.
     */
    async purge(orgId: number): Promise<OrgRecord> {
      return withOrgLock(orgId, async () => {
        const org = await repo.get(orgId);
        if (!org) throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
        if (org.status !== 'DELETED')
          throw conflict('ORG_NOT_DROPPED', `org ${orgId} is ${org.status}; drop it first: bin/tenant drop ${orgId} --force`);
        return purgeLocked(orgId);
      });
    },
    /** Purges the dropped orgs past TENANT_RETENTION_DAYS, at most `limit` per call; answers their ids. */
    async purgeExpired(limit = 100): Promise<number[]> {
      const due = await repo.sequelize.query<{ id: number }>(
        `SELECT id FROM orgs WHERE status = 'DELETED' AND purged_at IS NULL AND dropped_at IS NOT NULL
           AND dropped_at < CURRENT_TIMESTAMP(3) - INTERVAL :seconds SECOND ORDER BY dropped_at LIMIT :limit`,
        { replacements: { seconds: Math.round(config.retentionDays * 86_400), limit }, type: QueryTypes.SELECT },
      );
      const purged: number[] = [];
      for (const { id } of due) {
        try {
          await withOrgLock(Number(id), async () => {
            const org = await repo.get(Number(id));
            if (org?.status === 'DELETED' && !org.purgedAt) await purgeLocked(org.id); // not undropped meanwhile
          });
          purged.push(Number(id));
          logger.info('tenant purged after its retention period', { orgId: Number(id), retentionDays: config.retentionDays });
        } catch (err) {
          logger.warn('purge of a dropped tenant failed; retried at the next sweep', { orgId: Number(id), err: describeError(err) });
        }
      }
      return purged;
    },
    /**
     * Makes the org's database, user and schema on another server (for a move): a database created here and now,
     * marked with the move's `copyUid` (COPY_TABLE) before anything else, then the same steps as provisioning, with
     * the names and password of `org` (a restore gives new ones); migrated up to `migrateTo` (a restore loads an older
     * backup at its own version, then migrates it forward), to the latest without. A database of that name already there is refused (TENANT_DB_EXISTS) and left alone,
     * whoever's it is: a move only ever fills, and drops, a database it made.
     */
    async placeCopy(org: ProvisionedOrg, serverId: number, copyUid: string, opts: { migrateTo?: string } = {}): Promise<void> {
      const there = { ...org, dbServerId: serverId };
      const admin = await servers.admin(serverId);
      const db = quoteIdentifier(org.dbName);
      try {
        await admin.query(`CREATE DATABASE ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
      } catch (err) {
        if (errnoOf(err) !== ER_DB_CREATE_EXISTS) throw err;
        if ((await copyMarkOf(admin, org.dbName)) !== copyUid)
          throw conflict('TENANT_DB_EXISTS', `database ${org.dbName} already exists on the target server; it was left untouched`);
      }
      await admin.query(`CREATE TABLE IF NOT EXISTS ${db}.${COPY_TABLE} (copy_uid CHAR(36) NOT NULL PRIMARY KEY)`);
      await admin.query(`INSERT IGNORE INTO ${db}.${COPY_TABLE} (copy_uid) VALUES (:copyUid)`, { replacements: { copyUid } });
      await admin.query(
        `CREATE TABLE IF NOT EXISTS ${db}.${OWNER_TABLE} (org_id INT UNSIGNED NOT NULL, org_uid CHAR(36) NOT NULL PRIMARY KEY)`,
      );
      await admin.query(`INSERT IGNORE INTO ${db}.${OWNER_TABLE} (org_id, org_uid) VALUES (:id, :uid)`, {
        replacements: { id: org.id, uid: org.uid },
      });
      await steps.CREATE_USER(there);
      await migrate(there, opts.migrateTo);
    },
    /** Migrates the org's database (as the org record names it) to the latest version, recording it (a restore's last step). */
    migrate: (org: ProvisionedOrg) => migrate(org),
    /**
     * Drops what placeCopy made on a server: the database only when it carries `copyUid` (or is still empty: a crash
     * right after CREATE DATABASE), and the user only with a marked database (the user is made after the mark).
     */
    async removeCopy(org: ProvisionedOrg, serverId: number, copyUid: string): Promise<'dropped' | 'absent' | 'foreign'> {
      const admin = await servers.admin(serverId);
      const mark = await copyMarkOf(admin, org.dbName);
      if (mark === undefined) return 'absent';
      if (mark === EMPTY) {
        await admin.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(org.dbName)}`);
        return 'dropped';
      }
      if (mark !== copyUid) return 'foreign';
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(org.dbName)}`);
      await admin.query(`DROP USER IF EXISTS ${accountOf(admin, org.dbUser, config.tenant.userHost)}`);
      // The copy's MIGRATE step recorded its version: the record follows the database.
      await deps.versions?.remove(serverId, org.dbName);
      return 'dropped';
    },
    /**
     * Drops the copy a move left behind after its switch: only if it is this org's and is not the copy `newCopyUid` (the
     * one the org now lives in: were both entries one server after all, this is where it stops). False when refused.
     */
    async removeOldCopy(org: ProvisionedOrg, serverId: number, newCopyUid: string): Promise<boolean> {
      const admin = await servers.admin(serverId);
      const mark = await copyMarkOf(admin, org.dbName);
      if (mark === newCopyUid) return false;
      return removeDatabase(org, serverId);
    },
    /** Drops the org's database (only if it is this org's) and its user on one server; false if the database is foreign. */
    removeDatabase,
  };
}

export type Provisioner = ReturnType<typeof createProvisioner>;
