/**
 * A tenant's backup and restore, and clones made from a backup.
 *
 * BACKUP   one REPEATABLE READ transaction on the tenant's database (a consistent snapshot: the tenant keeps reading and
 *          writing, nothing is locked): its applied migrations, each table's count and checksum, every row in
 *          primary-key batches, streamed through gzip into the store (backup-format.ts).
 * RESTORE  the file read once to check it (header, rows, counts, SHA-256, whose it is, a schema this code knows): a bad
 *          file changes nothing. Then, holding the org's move lock, the way a move does it: a fresh database and
 *          MySQL user (new names, a new password) on the same or another server, marked with a copy id, migrated to
 *          the backup's version; the rows loaded; counts and checksums compared with the trailer; migrated forward to
 *          the latest version; the old copy's writes fenced for good (change-capture.ts); the AUTO_INCREMENTs raised
 *          past the old copy's (an id is never given twice: ledger references and job ids are built from message ids);
 *          the org switched (database, user, password); after a grace period the old copy's account locked, its
 *          sessions ended, its database and user dropped. A failure before the switch drops only what it made.
 *          The org keeps its id, keys and balance (all in the shared DB).
 * CLONE    a new org (its own database, user, first key and balance, provisioned as any), then a restore of the
 *          source's snapshot into it. Messages the source had not finished sending are the source's to send: the
 *          messages component marks them FAILED, `CLONED_UNSENT`, in the clone (`onCloned`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { QueryTypes, Transaction, type Sequelize } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { AS_STORED, selectRows, statementsOf } from '../../platform/db/lean-query.js';
import { MIGRATIONS_TABLE, TENANT_MIGRATIONS_DIR, createMigrator } from '../../platform/db/migrator.js';
import { quoteIdentifier } from '../../platform/db/identifiers.js';
import { conflict, describeError, notFound } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import { randomPassword, type SecretBox } from '../../platform/lib/secrets.js';
import { BlobNotFoundError, createDirectoryStore, type BlobStore } from '../../platform/storage/blob-store.js';
import type { OrgRepository } from '../data-access/org.repository.js';
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  encodeValue,
  lineHasher,
  readBackup,
  type BackupHeader,
  type BackupTrailer,
} from './backup-format.js';
import { createChangeCapture } from './change-capture.js';
import type { OrgEvents } from './org-events.js';
import { isOperational, type OrgRecord, type ProvisionedOrg } from './org.js';
import { accountOf, type Provisioner } from './provisioner.js';
import type { ServerRegistry } from './server-registry.js';
import { copyLimits, dataTableNames, dataTables, insertRows, tableChecksumSql, type DataTable } from './table-copy.js';
import { tenantDbName, tenantDbUser } from './tenant-names.js';
import type { TenantMover } from './tenant-mover.js';
import { killSessionsOf } from './tenant-sessions.js';

export interface BackupResult {
  orgId: number;
  /** Where it was written. */
  file: string;
  bytes: number;
  rows: Record<string, number>;
  /** The tenant's schema version (its last applied migration). */
  schemaVersion: string;
  sha256: string;
  ms: number;
}

export interface RestoreResult {
  orgId: number;
  from: string;
  /** The backup's org (another org's with --force-foreign). */
  backupOrgId: number;
  server: string;
  dbName: string;
  rows: Record<string, number>;
  /** The backup's schema version, and the version the database was migrated forward to. */
  schemaVersion: { backup: string; now: string };
  ms: number;
  /** False when the old copy could not be dropped after the grace period (the log says why). */
  oldCopyDropped: boolean;
}

export interface TenantBackupsDeps {
  config: Config;
  repo: OrgRepository;
  servers: ServerRegistry;
  provisioner: Pick<Provisioner, 'placeCopy' | 'removeCopy' | 'removeDatabase' | 'migrate' | 'create' | 'drop' | 'purge'>;
  mover: Pick<TenantMover, 'withMoveLock'>;
  events: Pick<OrgEvents, 'publish'>;
  secrets: SecretBox;
  store: BlobStore;
  logger: Logger;
  /** How long the old copy stays after a restore's switch (default ORG_CACHE_TTL_MS + 1 s). */
  oldCopyGraceMs?: number;
  /** Run on a clone's new database before its switch (the messages component marks what the source had not sent). */
  onCloned?: (db: Sequelize, sourceOrgId: number) => Promise<unknown>;
  /** Rows per SELECT while backing up (default 5,000). */
  batchRows?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Row = Record<string, unknown>;

/** A backup's default name: `org-<id>-<UTC time>.tenant-backup.jsonl.gz`. */
export const defaultBackupName = (orgId: number, at = new Date()) =>
  `org-${orgId}-${at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}.tenant-backup.jsonl.gz`;

export function createTenantBackups(deps: TenantBackupsDeps) {
  const { config, repo, servers, provisioner, events, secrets, store, logger } = deps;
  const graceMs = deps.oldCopyGraceMs ?? config.orgCacheTtlMs + 1000;
  const batchRows = deps.batchRows ?? 5000;
  const migrationsDir = config.tenantMigrationsDir ?? TENANT_MIGRATIONS_DIR;

  async function operational(orgId: number): Promise<ProvisionedOrg> {
    const org = await repo.get(orgId);
    if (!org || org.status === 'DELETED') throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
    if (!isOperational(org)) throw conflict('ORG_NOT_READY', `org ${orgId} is ${org.status}`);
    return org;
  }

  /** The backup's lines, read in one snapshot of the tenant's database. `out` receives the counts and the checksum. */
  async function* snapshotLines(
    db: Sequelize,
    org: ProvisionedOrg,
    tables: DataTable[],
    out: { rows: Record<string, number>; schema: string[]; sha256: string },
  ): AsyncGenerator<string> {
    const hasher = lineHasher();
    const t = await db.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ });
    let committed = false;
    try {
      const q = statementsOf(t);
      // The first read fixes the snapshot: every later read of this transaction sees the database as it was then.
      out.schema = (await q.select<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY name`, [])).map((r) => r.name);
      const counts: Record<string, number> = {};
      const checksums: Record<string, string> = {};
      for (const table of tables) {
        const [c] = await q.select<{ n: number; sum: string }>(tableChecksumSql(table), [], AS_STORED);
        counts[table.name] = Number(c?.n ?? 0);
        checksums[table.name] = String(c?.sum ?? '0');
      }
      const header: BackupHeader = {
        format: BACKUP_FORMAT,
        version: BACKUP_FORMAT_VERSION,
        orgId: org.id,
        orgUid: org.uid,
        orgName: org.name,
        createdAt: new Date().toISOString(),
        schema: out.schema,
        tables,
      };
      yield hasher.line(JSON.stringify(header));
      for (const table of tables) {
        const cols = table.columns.map(quoteIdentifier).join(', ');
        const sql = `SELECT ${cols} FROM ${quoteIdentifier(table.name)} WHERE id > ? ORDER BY id LIMIT ?`;
        let written = 0;
        for (let after = 0; ;) {
          const rows = await q.select<Row>(sql, [after, batchRows], AS_STORED);
          if (!rows.length) break;
          let chunk = '';
          for (const r of rows) chunk += `${JSON.stringify([table.name, ...table.columns.map((c) => encodeValue(r[c]))])}\n`;
          written += rows.length;
          yield hasher.chunk(chunk);
          after = Number(rows.at(-1)!.id);
        }
        out.rows[table.name] = written;
        if (written !== counts[table.name])
          throw new Error(`${table.name}: ${written} rows read, ${counts[table.name]} counted in the same snapshot`);
      }
      out.sha256 = hasher.digest();
      const trailer: BackupTrailer = { end: true, counts, checksums, sha256: out.sha256 };
      await t.commit();
      committed = true;
      yield `${JSON.stringify(trailer)}\n`;
    } finally {
      if (!committed) await t.rollback().catch(() => undefined);
    }
  }

  /** Writes a backup of the org's database to `store` under `name`. */
  async function backupTo(target: BlobStore, orgId: number, name: string): Promise<BackupResult> {
    const org = await operational(orgId);
    const started = performance.now();
    const db = await servers.adminForDatabase(org.dbServerId, org.dbName, 2);
    try {
      const tables = await dataTables(db, org.dbName);
      const out = { rows: {} as Record<string, number>, schema: [] as string[], sha256: '' };
      const gz = pipeline(Readable.from(snapshotLines(db, org, tables, out)), createGzip(), () => undefined);
      const { bytes } = await target.put(name, gz);
      const ms = Math.round(performance.now() - started);
      logger.info('tenant backup written', { orgId, file: target.describe(name), bytes, ms });
      return { orgId, file: target.describe(name), bytes, rows: out.rows, schemaVersion: out.schema.at(-1) ?? '', sha256: out.sha256, ms };
    } finally {
      await db.close().catch(() => undefined);
    }
  }

  /** Reads and checks a whole backup without changing anything. */
  async function check(from: BlobStore, name: string, onRows?: (table: DataTable, rows: Row[]) => Promise<void>) {
    let file: Readable;
    try {
      file = await from.get(name);
    } catch (err) {
      if (err instanceof BlobNotFoundError) throw notFound('BACKUP_NOT_FOUND', `backup ${err.blob} does not exist`);
      throw err;
    }
    return readBackup(file, { onRows, batchRows: 5000 });
  }

  /** The tenant migrations this code has, oldest first. */
  async function knownMigrations(): Promise<string[]> {
    // Listing reads the folder only: no query (the shared DB's connection is just the context Umzug requires).
    const migrator = createMigrator({ sequelize: repo.sequelize, dir: migrationsDir });
    return (await migrator.migrations(repo.sequelize.getQueryInterface())).map((m) => m.name);
  }

  /** Names for the restored copy: `<prefix><id>_r<6 random>` (a server may hold the current copy under the plain name). */
  const freshNames = (org: OrgRecord) => {
    const user = tenantDbUser(config.tenant.dbPrefix, org.id);
    // MySQL 8 user names have at most 32 characters: the random part shrinks to fit (a 20-character prefix and a
    // 10-digit id leave 0 of them: refused rather than truncated into another tenant's name).
    const room = Math.min(6, 32 - user.length - 2);
    if (room < 3) throw new Error(`no room for a restore's user name after ${user} (MySQL user names have at most 32 characters)`);
    const suffix = `_r${randomBytes(4).toString('hex').slice(0, room)}`;
    return { dbName: `${tenantDbName(config.tenant.dbPrefix, org.id)}${suffix}`, dbUser: `${user}${suffix}` };
  };

  /** After the grace period: the old copy's account locked, its sessions ended, its database and user dropped. */
  async function dropOldCopy(old: ProvisionedOrg, waitMs: number): Promise<boolean> {
    await sleep(waitMs);
    const admin = await servers.admin(old.dbServerId);
    await admin.query(`ALTER USER ${accountOf(admin, old.dbUser, config.tenant.userHost)} ACCOUNT LOCK`).catch(() => undefined);
    await killSessionsOf(admin, old.dbUser);
    const dropped = await provisioner.removeDatabase(old, old.dbServerId);
    await repo.sequelize.query(
      'UPDATE orgs SET retired_db_server_id = NULL, retired_db_name = NULL, retired_db_user = NULL, retired_at = NULL WHERE id = :id AND retired_db_name = :db',
      { replacements: { id: old.id, db: old.dbName } },
    );
    return dropped;
  }

  interface Retired {
    id: number;
    server: number;
    db: string;
    user: string;
    age: number;
  }
  const retiredOf = (where: string, replacements: Record<string, unknown>) =>
    repo.sequelize.query<Retired>(
      `SELECT id, retired_db_server_id AS server, retired_db_name AS db, retired_db_user AS user,
              TIMESTAMPDIFF(MICROSECOND, retired_at, CURRENT_TIMESTAMP(3)) / 1000 AS age
       FROM orgs WHERE retired_at IS NOT NULL AND ${where}`,
      { replacements, type: QueryTypes.SELECT },
    );

  /** Drops the copy a restore of this org switched away from, once its grace period is over (under the move lock). */
  async function dropRetired(r: Retired): Promise<void> {
    const org = await repo.get(Number(r.id));
    if (!org) return;
    const old = { ...org, dbServerId: Number(r.server), dbName: r.db, dbUser: r.user, dbPasswordEnc: org.dbPasswordEnc ?? '' };
    if (old.dbName === org.dbName && old.dbServerId === org.dbServerId) {
      // Never the copy it lives in: only the record goes.
      await repo.sequelize.query(
        'UPDATE orgs SET retired_db_server_id = NULL, retired_db_name = NULL, retired_db_user = NULL, retired_at = NULL WHERE id = :id',
        {
          replacements: { id: org.id },
        },
      );
      return;
    }
    // The restore that switched may have died before it published the change: other processes may still route to
    // the old copy (cached for up to ORG_CACHE_MAX_AGE_MS while their change feed is live). Published now, it takes
    // effect at once (a second for what is in flight); unpublished, the old copy waits out the longest cache life.
    const published = await events.publish({ orgId: org.id, reason: 'restored' });
    const age = Number(r.age);
    await dropOldCopy(old, published ? Math.max(1000, graceMs - age) : Math.max(0, config.orgCacheMaxAgeMs + 1000 - age));
  }

  async function restoreLocked(
    orgId: number,
    from: BlobStore,
    name: string,
    opts: { toServer?: string; forceForeign?: boolean; graceMs?: number; beforeSwitch?: (db: Sequelize) => Promise<void> },
  ): Promise<RestoreResult> {
    const started = performance.now();
    // 1. The file, whole, before anything is touched.
    const { header, trailer } = await check(from, name);
    const org = await operational(orgId);
    if (header.orgUid !== org.uid && !opts.forceForeign)
      throw conflict(
        'BACKUP_FOREIGN',
        `the backup is of org ${header.orgId} (${header.orgName}), not of org ${orgId}; nothing was changed (--force-foreign restores it anyway)`,
      );
    const known = await knownMigrations();
    const unknown = header.schema.filter((m, i) => known[i] !== m);
    if (unknown.length)
      throw conflict(
        'BACKUP_SCHEMA_UNKNOWN',
        `the backup's schema (${header.schema.at(-1)}) has migrations this code does not know (${unknown.slice(0, 3).join(', ')}); restore it with the code that wrote it`,
      );

    return deps.mover.withMoveLock(orgId, async () => {
      // An earlier restore's old copy still recorded (its process died in the grace period): dropped first.
      for (const r of await retiredOf('id = :id', { id: orgId })) await dropRetired(r);
      const current = await operational(orgId);
      const target = opts.toServer ? await servers.pickForNewTenant(opts.toServer) : await servers.get(current.dbServerId);
      const fresh: ProvisionedOrg = {
        ...current,
        ...freshNames(current),
        dbServerId: target.id,
        dbPasswordEnc: secrets.encrypt(randomPassword()),
      };
      const copyUid = randomUUID();
      let dest: Sequelize | undefined;
      let fenceDb: Sequelize | undefined;
      let fenced: string[] | undefined;
      let switched = false;
      try {
        // 2. A fresh database at the backup's version, filled, compared.
        await provisioner.placeCopy(fresh, target.id, copyUid, { migrateTo: header.schema.at(-1) });
        dest = await servers.adminForDatabase(target.id, fresh.dbName, 2);
        const there = dest;
        const have = new Map((await dataTables(there, fresh.dbName)).map((t) => [t.name, t]));
        for (const t of header.tables) {
          const cols = have.get(t.name)?.columns ?? [];
          const missing = t.columns.filter((c) => !cols.includes(c));
          if (missing.length) throw new Error(`the backup's ${t.name} has columns its schema version does not make: ${missing.join(', ')}`);
        }
        const limits = await copyLimits(there, 5000);
        // Read again, loading this time (the file is checked once more as it is read: it must not have changed).
        await check(from, name, (table, rows) => insertRows(there, table, rows, limits));
        for (const t of header.tables) {
          const [c] = await selectRows<{ n: number; sum: string }>(there, tableChecksumSql(t), [], AS_STORED);
          if (Number(c?.n) !== trailer.counts[t.name] || String(c?.sum) !== trailer.checksums[t.name])
            throw new Error(
              `verification failed on ${t.name}: ${c?.n} rows (checksum ${c?.sum}) restored, the backup has ${trailer.counts[t.name]} (${trailer.checksums[t.name]})`,
            );
        }
        // 3. Forward to the latest version.
        await provisioner.migrate(fresh);
        await opts.beforeSwitch?.(there);
        // 4. The old copy takes no write from here on; ids never go back.
        fenceDb = await servers.adminForDatabase(current.dbServerId, current.dbName, 1);
        const capture = createChangeCapture(fenceDb);
        fenced = await dataTableNames(fenceDb, current.dbName);
        await capture.install(fenced);
        await capture.pause(30_000);
        await capture.seal();
        for (const t of await dataTables(there, fresh.dbName)) {
          if (!fenced.includes(t.name)) continue;
          const [old] = await fenceDb.query<{ top: number | null }>(`SELECT MAX(id) AS top FROM ${quoteIdentifier(t.name)}`, {
            type: QueryTypes.SELECT,
          });
          const [info] = await fenceDb.query<{ next: number | null }>(
            'SELECT AUTO_INCREMENT AS next FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db AND TABLE_NAME = :t',
            { replacements: { db: current.dbName, t: t.name }, type: QueryTypes.SELECT },
          );
          const next = Math.max(Number(old?.top ?? 0) + 1, Number(info?.next ?? 1));
          await there.query(`ALTER TABLE ${quoteIdentifier(t.name)} AUTO_INCREMENT = ${Math.floor(next)}`);
        }
        // 5. The switch: database, user and password at once, only if nothing moved the org meanwhile.
        const [, meta] = await repo.sequelize.query(
          `UPDATE orgs SET db_server_id = :to, db_name = :db, db_user = :user, db_password_enc = :pw, updated_at = CURRENT_TIMESTAMP(3),
             retired_db_server_id = :from, retired_db_name = :oldDb, retired_db_user = :oldUser, retired_at = CURRENT_TIMESTAMP(3)
           WHERE id = :id AND db_server_id = :from AND db_name = :oldDb AND moving_since IS NULL AND retired_at IS NULL
             AND moving_to_server_id IS NULL AND moving_from_server_id IS NULL AND status IN ('ACTIVE', 'SUSPENDED')`,
          {
            replacements: {
              id: orgId,
              to: target.id,
              db: fresh.dbName,
              user: fresh.dbUser,
              pw: fresh.dbPasswordEnc,
              from: current.dbServerId,
              oldDb: current.dbName,
              oldUser: current.dbUser,
            },
          },
        );
        if ((meta as { affectedRows?: number }).affectedRows !== 1)
          throw conflict(
            'ORG_CHANGED',
            `org ${orgId} changed during the restore (dropped, suspended for good or moved); nothing was switched`,
          );
        switched = true;
      } catch (err) {
        if (!switched) {
          logger.error('tenant restore failed; the tenant stays as it was', { orgId, err: describeError(err) });
          if (fenced && fenceDb) {
            const capture = createChangeCapture(fenceDb);
            await capture.resume().catch(() => undefined);
            await capture
              .remove(fenced)
              .catch((e: unknown) => logger.error('restore: triggers left on the old copy', { orgId, err: describeError(e) }));
          }
          await provisioner
            .removeCopy(fresh, target.id, copyUid)
            .catch((e: unknown) =>
              logger.error('restore: the fresh copy could not be dropped', { orgId, db: fresh.dbName, err: describeError(e) }),
            );
        }
        throw err;
      } finally {
        await Promise.allSettled([dest?.close(), fenceDb?.close()]);
      }
      // Unpublished, the change reaches other processes only as their cached entry expires: the old copy waits for that.
      const published = await events.publish({ orgId, reason: 'restored' });
      const grace = opts.graceMs ?? (published ? graceMs : Math.max(graceMs, config.orgCacheMaxAgeMs + 1000));
      const oldCopyDropped = await dropOldCopy(current, grace).catch((err: unknown) => {
        logger.warn('restore: switched, but the old copy could not be dropped', { orgId, db: current.dbName, err: describeError(err) });
        return false;
      });
      const now = (await knownMigrations()).at(-1) ?? '';
      logger.info('tenant restored', { orgId, from: from.describe(name), server: target.name, db: fresh.dbName });
      return {
        orgId,
        from: from.describe(name),
        backupOrgId: header.orgId,
        server: target.name,
        dbName: fresh.dbName,
        rows: trailer.counts,
        schemaVersion: { backup: header.schema.at(-1)!, now },
        ms: Math.round(performance.now() - started),
        oldCopyDropped,
      };
    });
  }

  return {
    store,
    /** Backs the org's database up to `name` in the store (a default name with the org id and the time). */
    backup: (orgId: number, name?: string) => backupTo(store, orgId, name ?? defaultBackupName(orgId)),
    /** Reads and checks a backup (header, checksum, counts) without changing anything. */
    verify: (name: string) => check(store, name),
    /** Restores the org from a backup into a fresh database and switches it there (see the file's comment). */
    restore: (orgId: number, name: string, opts: { toServer?: string; forceForeign?: boolean } = {}) =>
      restoreLocked(orgId, store, name, opts),
    /** A new org named `name` whose database is a copy of the source's (its own user, keys and balance). */
    async clone(sourceId: number, input: { name: string; credits: number; server?: string }) {
      await operational(sourceId);
      const dir = await mkdtemp(path.join(tmpdir(), 'tenancy-clone-'));
      const tmp = createDirectoryStore(dir);
      try {
        const snapshot = await backupTo(tmp, sourceId, 'snapshot.jsonl.gz');
        const created = await provisioner.create(input);
        await events.publish({ orgId: created.org.id, reason: 'created' });
        try {
          const restored = await restoreLocked(created.org.id, tmp, 'snapshot.jsonl.gz', {
            forceForeign: true,
            graceMs: 0, // nobody knows the new org yet
            beforeSwitch: async (db) => {
              await deps.onCloned?.(db, sourceId);
            },
          });
          return { org: (await repo.get(created.org.id))!, apiKey: created.apiKey, sourceId, rows: snapshot.rows, restored };
        } catch (err) {
          logger.error('clone failed; the new org is purged', { sourceId, orgId: created.org.id, err: describeError(err) });
          await provisioner
            .drop(created.org.id)
            .then(() => provisioner.purge(created.org.id))
            .catch(() => undefined);
          await events.publish({ orgId: created.org.id, reason: 'dropped' });
          throw err;
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    /**
     * Drops the old copies that restores left recorded past their grace period (a restore whose process died after
     * its switch); the reconciler's sweep calls it. Answers the org ids done; an org being moved or restored is skipped.
     */
    async dropRetiredCopies(): Promise<number[]> {
      const done: number[] = [];
      for (const r of await retiredOf('retired_at < CURRENT_TIMESTAMP(3) - INTERVAL :ms * 1000 MICROSECOND', { ms: graceMs })) {
        try {
          await deps.mover.withMoveLock(Number(r.id), () => dropRetired(r));
          done.push(Number(r.id));
          logger.info('restore: an old copy left by a restore was dropped', { orgId: Number(r.id), db: r.db });
        } catch (err) {
          logger.warn('restore: an old copy could not be dropped yet; retried at the next sweep', {
            orgId: Number(r.id),
            err: describeError(err),
          });
        }
      }
      return done;
    },
    /** Backups in the store, of one org or all. */
    list: (orgId?: number) => store.list(orgId === undefined ? 'org-' : `org-${orgId}-`),
  };
}

export type TenantBackups = ReturnType<typeof createTenantBackups>;
