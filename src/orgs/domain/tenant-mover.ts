/**
 * Moves a tenant's database to another MySQL server while the tenant keeps working (an online move):
 *
 *   PLACE_COPY  a fresh database, user and schema on the target, marked with this move's copy id
 *   CAPTURE     change log + write fence (triggers) on the old copy: change-capture.ts
 *   COPY        every data table in primary-key batches (bounded by rows and bytes), reads and writes go on
 *   CATCH_UP    rows changed meanwhile are copied again, until few are left
 *   VERIFY      count and checksum per id range on both sides; a difference must be a change still pending
 *   PAUSE       the tenant's writes paused (reads go on), the last changes applied, those rows verified one by one
 *   SWITCH      the pause made permanent on the old copy, the org switched to the target; writes go there
 *   CLEANUP     after a grace period (processes still reading the old copy drop it), the old copy and user dropped
 *
 * One move per tenant at a time, across processes: a MySQL lock on the shared DB held for the whole move, also taken
 * by `--abort` and by `drop` (they ask a live move to stop, then wait for it). A failure before the switch resumes
 * the writes where they were and drops only the copy this move made; a switch whose outcome the client could not see
 * is read back before anything is dropped. Servers are compared by identity: never a move onto the same server.
 */
import { randomUUID } from 'node:crypto';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { LockTimeoutError, withLock } from '../../platform/db/migrator.js';
import { createSequelize } from '../../platform/db/sequelize.js';
import { conflict, describeError, notFound, unavailable } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { OrgEvents } from './org-events.js';
import { isOperational, type ProvisionedOrg } from './org.js';
import type { OrgRepository } from '../data-access/org.repository.js';
import { createChangeCapture, type ChangeCapture } from './change-capture.js';
import { accountOf, type Provisioner } from './provisioner.js';
import type { ServerRegistry } from './server-registry.js';
import {
  applyRows,
  bulkCopy,
  checksumRange,
  copyLimits,
  dataTableNames,
  dataTables,
  differing,
  rowHashes,
  topOf,
  type CopyLimits,
  type DataTable,
} from './table-copy.js';
import { killSessionsOf } from './tenant-sessions.js';

export const MOVE_STEPS = ['PLACE_COPY', 'CAPTURE', 'COPY', 'CATCH_UP', 'VERIFY', 'PAUSE', 'SWITCH', 'CLEANUP'] as const;
export type MoveStep = (typeof MOVE_STEPS)[number];

export interface MoveResult {
  orgId: number;
  from: string;
  to: string;
  /** Rows of the bulk copy, per table. */
  rows: Record<string, number>;
  /** Rows copied again because they changed during the move. */
  changesApplied: number;
  /** How long the tenant's writes were paused (from the pause to the switch), in ms. */
  writePauseMs: number;
  /** Where the pause went: waiting for writes in flight, the last rows carried over, comparing them, the switch. */
  writePause: { fenceMs: number; lastRows: number; catchUpMs: number; verifyMs: number; switchMs: number };
  /** Bulk copy duration, ms. */
  copyMs: number;
  /** False when the old copy could not be dropped after the switch (the log says why; `move <id> --abort` retries). */
  oldCopyDropped: boolean;
}

/** What `move --abort` (and `drop`) found and did. */
export type SettleResult = 'rolled-back' | 'cleaned-up' | 'none';

export interface TenantMoverDeps {
  config: Config;
  repo: OrgRepository;
  servers: ServerRegistry;
  provisioner: Pick<Provisioner, 'placeCopy' | 'removeCopy' | 'removeOldCopy'>;
  events: Pick<OrgEvents, 'publish'>;
  logger: Logger;
  /** Rows per INSERT at most while copying (bytes are bounded by the target's max_allowed_packet too). */
  batchSize?: number;
  /** Changes left below which the writes are paused for the last ones (default 500). */
  pauseBelow?: number;
  /** A pause longer than this before the switch is given up: writes resume and it is tried again (default 3000). */
  pauseMaxMs?: number;
  /** How long the old copy stays, write-fenced, after the switch (default ORG_CACHE_TTL_MS + 1 s). */
  oldCopyGraceMs?: number;
  /** How long `--abort` and `drop` wait for a live move to stop (default 120 s). */
  settleWaitSec?: number;
  /** Test seam: called before each step; may throw to fail the move there. */
  beforeStep?: (step: MoveStep, orgId: number) => void | Promise<void>;
  /** Test seam: called right after the switch's UPDATE returned; a throw is an error the client saw after a commit. */
  afterSwitch?: (orgId: number) => void | Promise<void>;
  /** Test seam: the old server's sessions of the tenant were listed, none killed yet. */
  beforeKill?: (sessionIds: number[]) => void | Promise<void>;
}

/** The move columns of an org, read fresh. */
interface MoveState {
  status: string;
  dbServerId: number;
  movingSince: Date | null;
  movingTo: number | null;
  movingFrom: number | null;
  copyUid: string | null;
}

/** A move stopped by `--abort` or `drop`. */
class MoveCancelled extends Error {
  constructor(orgId: number) {
    super(`the move of org ${orgId} was stopped (move --abort or drop)`);
    this.name = 'MoveCancelled';
  }
}

/** The switch's outcome could not be read back: nothing may be dropped until it is. */
class SwitchUncertain extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createTenantMover(deps: TenantMoverDeps) {
  const { config, repo, servers, provisioner, events, logger } = deps;
  const db = repo.sequelize;
  const batch = deps.batchSize ?? 5000;
  const pauseBelow = deps.pauseBelow ?? 500;
  const pauseMaxMs = deps.pauseMaxMs ?? 3000;
  const graceMs = deps.oldCopyGraceMs ?? config.orgCacheTtlMs + 1000;

  async function readState(orgId: number): Promise<MoveState | undefined> {
    const [r] = await db.query<Record<string, unknown>>(
      'SELECT status, db_server_id, moving_since, moving_to_server_id, moving_from_server_id, moving_copy_uid FROM orgs WHERE id = :id',
      { replacements: { id: orgId }, type: QueryTypes.SELECT },
    );
    if (!r) return undefined;
    const num = (v: unknown) => (v == null ? null : Number(v));
    return {
      status: String(r.status),
      dbServerId: Number(r.db_server_id),
      movingSince: (r.moving_since as Date | null) ?? null,
      movingTo: num(r.moving_to_server_id),
      movingFrom: num(r.moving_from_server_id),
      copyUid: (r.moving_copy_uid as string | null) ?? null,
    };
  }

  /** Runs fn holding the org's move lock (its own connection to the shared DB, held for the whole run). */
  async function locked<T>(orgId: number, waitSec: number, busy: string, fn: () => Promise<T>): Promise<T> {
    const lockDb = createSequelize({ ...config.db, database: config.db.name, poolMax: 1, connectTimeoutMs: 3000 });
    let held = false;
    try {
      return await withLock(lockDb, `tenancy:move:${config.db.name}:${orgId}`, waitSec, () => {
        held = true;
        return fn();
      });
    } catch (err) {
      if (err instanceof LockTimeoutError && !held) throw conflict('MOVE_IN_PROGRESS', busy);
      throw err;
    } finally {
      await lockDb.close().catch(() => undefined);
    }
  }

  async function step<T>(name: MoveStep, orgId: number, fn: () => Promise<T>): Promise<T> {
    await deps.beforeStep?.(name, orgId);
    const result = await fn();
    logger.info('tenant move step done', { orgId, step: name });
    return result;
  }

  /** What one move works with. */
  interface Plan {
    org: ProvisionedOrg;
    from: number;
    to: number;
    copyUid: string;
  }

  /** The tenant's writes on its old copy again, and the triggers gone (a move that did not switch). */
  async function releaseOldCopy(p: Plan): Promise<void> {
    const conn = await servers.adminForDatabase(p.from, p.org.dbName, 1);
    try {
      const capture = createChangeCapture(conn);
      await capture.resume().catch(() => undefined); // no fence table: nothing was installed
      await capture.remove(await dataTableNames(conn, p.org.dbName));
    } finally {
      await conn.close().catch(() => undefined);
    }
  }

  /**
   * Undoes a move that did not switch: writes resumed on the old copy, the copy this move made dropped (by its mark),
   * the org's move columns cleared. What cannot be done now (a server down) stays recorded for `move --abort`.
   */
  async function rollBack(p: Plan): Promise<void> {
    const problems: string[] = [];
    await releaseOldCopy(p).catch((err: unknown) => problems.push(`old copy: ${describeError(err)}`));
    const removed = await provisioner.removeCopy(p.org, p.to, p.copyUid).catch((err: unknown) => {
      problems.push(`new copy: ${describeError(err)}`);
      return 'failed' as const;
    });
    if (removed === 'foreign')
      logger.warn('move: a database of the tenant’s name on the target is not this move’s copy; left untouched', { orgId: p.org.id });
    if (problems.length) {
      // The tenant works where it is; the leftovers stay recorded (moving_to, copy id) for `move --abort`.
      await db.query('UPDATE orgs SET moving_since = NULL WHERE id = :id AND moving_copy_uid = :copy', {
        replacements: { id: p.org.id, copy: p.copyUid },
      });
      logger.error('move: rolled back in part; run bin/tenant move <id> --abort to finish', { orgId: p.org.id, problems });
    } else {
      await db.query(
        `UPDATE orgs SET moving_since = NULL, moving_to_server_id = NULL, moving_from_server_id = NULL, moving_copy_uid = NULL
         WHERE id = :id AND db_server_id = :from AND moving_copy_uid = :copy`,
        { replacements: { id: p.org.id, from: p.from, copy: p.copyUid } },
      );
    }
    await events.publish({ orgId: p.org.id, reason: 'move-aborted' });
    if (problems.length)
      throw new Error(`the move was rolled back only in part (${problems.join('; ')}); finish with bin/tenant move ${p.org.id} --abort`);
  }

  /**
   * After the switch: once no process reads the old copy any more, its account is locked, its sessions (by who they
   * are at that moment) ended, and the database and user dropped — never the copy the org now lives in.
   */
  async function dropOldCopy(p: Plan, waitMs: number): Promise<boolean> {
    await sleep(waitMs);
    const admin = await servers.admin(p.from);
    await admin.query(`ALTER USER ${accountOf(admin, p.org.dbUser, config.tenant.userHost)} ACCOUNT LOCK`).catch(() => undefined); // gone already
    await killSessionsOf(admin, p.org.dbUser, { listed: deps.beforeKill });
    const dropped = await provisioner.removeOldCopy({ ...p.org, dbServerId: p.from }, p.from, p.copyUid);
    // Not this org's old copy (or the very copy it lives in now): nothing of the move's is left to drop there.
    if (!dropped) logger.warn('move: the database on the old server is not this org’s old copy; left untouched', { orgId: p.org.id });
    await db.query('UPDATE orgs SET moving_from_server_id = NULL, moving_copy_uid = NULL WHERE id = :id AND moving_copy_uid = :copy', {
      replacements: { id: p.org.id, copy: p.copyUid },
    });
    return dropped;
  }

  /** Throws MoveCancelled once `--abort` or `drop` asked the move to stop (checked at most every 500 ms). */
  function cancellation(p: Plan) {
    let last = 0;
    return async (force = false) => {
      if (!force && Date.now() - last < 500) return;
      last = Date.now();
      const s = await readState(p.org.id);
      if (!s || s.movingSince === null || s.copyUid !== p.copyUid || (s.status !== 'ACTIVE' && s.status !== 'SUSPENDED'))
        throw new MoveCancelled(p.org.id);
    };
  }

  /**
   * Copies changed rows again until fewer than `below` wait (or `all`: until none). Answers the rows applied; their
   * ids are added to `touched` (rows that must be verified again).
   */
  async function catchUp(
    capture: ChangeCapture,
    from: Sequelize,
    to: Sequelize,
    tables: DataTable[],
    limits: CopyLimits,
    opts: { below: number; touched?: Map<string, Set<number>>; check?: () => Promise<void> },
  ): Promise<number> {
    let applied = 0;
    for (let round = 0; round < 1000; round++) {
      const changes = await capture.pending(5000);
      if (changes.length === 0 || (changes.length < opts.below && round > 0)) break;
      for (const table of tables) {
        const ids = [...new Set(changes.filter((c) => c.table === table.name).map((c) => c.id))];
        if (!ids.length) continue;
        await applyRows(from, to, table, ids, limits);
        applied += ids.length;
        if (opts.touched) {
          const set = opts.touched.get(table.name) ?? new Set<number>();
          ids.forEach((id) => set.add(id));
          opts.touched.set(table.name, set);
        }
      }
      await capture.consumed(changes);
      await opts.check?.();
      if (changes.length < opts.below) break;
    }
    return applied;
  }

  /**
   * Checksums both copies per range of 10,000 ids. A range that differs is compared row by row; every row that
   * differs must have a change pending (it changed after the copy and will be carried over): anything else is a copy
   * that went wrong.
   */
  async function verifyCopies(capture: ChangeCapture, from: Sequelize, to: Sequelize, tables: DataTable[], check: () => Promise<void>) {
    const RANGE = 10_000;
    const suspects = new Map<string, number[]>();
    for (const table of tables) {
      const end = Math.max(await topOf(from, table), await topOf(to, table));
      for (let lo = 1; lo <= end; lo += RANGE) {
        const hi = lo + RANGE - 1;
        const [a, b] = await Promise.all([checksumRange(from, table, lo, hi), checksumRange(to, table, lo, hi)]);
        if (a.n !== b.n || a.sum !== b.sum) {
          const [ha, hb] = await Promise.all([rowHashes(from, table, { lo, hi }), rowHashes(to, table, { lo, hi })]);
          suspects.set(table.name, [...(suspects.get(table.name) ?? []), ...differing(ha, hb)]);
        }
        await check();
      }
    }
    if (suspects.size === 0) return;
    const pending = new Set((await capture.pending(1_000_000)).map((c) => `${c.table}:${c.id}`));
    for (const [table, ids] of suspects) {
      const unexplained = ids.filter((id) => !pending.has(`${table}:${id}`));
      if (unexplained.length)
        throw new Error(
          `verification failed: ${unexplained.length} row(s) of ${table} differ on the new server (ids ${unexplained.slice(0, 5).join(', ')}…)`,
        );
    }
  }

  /**
   * Compares the rows carried over since VERIFY one by one. Before the pause (`capture` given), a row that differs must
   * have changed again (a change pending: it will be carried over and compared in the pause); in the pause, none may
   * differ, and the highest ids must match. Counts were compared per id range by VERIFY, and every row written since
   * is compared here, so the pause does not count a million rows again.
   */
  async function verifyRows(
    from: Sequelize,
    to: Sequelize,
    tables: DataTable[],
    touched: Map<string, Set<number>>,
    capture?: ChangeCapture,
  ): Promise<void> {
    const bad: { table: string; id: number }[] = [];
    for (const table of tables) {
      const ids = [...(touched.get(table.name) ?? [])];
      for (let i = 0; i < ids.length; i += 1000) {
        const some = ids.slice(i, i + 1000);
        const [a, b] = await Promise.all([rowHashes(from, table, { ids: some }), rowHashes(to, table, { ids: some })]);
        bad.push(...differing(a, b).map((id) => ({ table: table.name, id })));
      }
      if (!capture) {
        const [a, b] = await Promise.all([topOf(from, table), topOf(to, table)]);
        if (a !== b) throw new Error(`verification failed on ${table.name}: highest id ${a} on the old server, ${b} on the new one`);
      }
    }
    if (!bad.length) return;
    const pending = capture ? new Set((await capture.pending(1_000_000)).map((c) => `${c.table}:${c.id}`)) : new Set<string>();
    const wrong = bad.filter((r) => !pending.has(`${r.table}:${r.id}`));
    if (wrong.length)
      throw new Error(
        `verification failed: ${wrong.length} changed row(s) differ on the new server (${wrong
          .slice(0, 5)
          .map((r) => `${r.table} ${r.id}`)
          .join(', ')}…)`,
      );
  }

  /** Points the org at the target. An error after the UPDATE may hide a commit: then the org is read back. */
  async function switchOrg(p: Plan): Promise<void> {
    let sure = false;
    try {
      const [, m] = await db.query(
        `UPDATE orgs SET db_server_id = :to, moving_since = NULL, moving_to_server_id = NULL
         WHERE id = :id AND db_server_id = :from AND moving_to_server_id = :to AND moving_copy_uid = :copy
           AND moving_since IS NOT NULL AND status IN ('ACTIVE', 'SUSPENDED')`,
        { replacements: { id: p.org.id, to: p.to, from: p.from, copy: p.copyUid } },
      );
      if ((m as { affectedRows?: number }).affectedRows !== 1) {
        sure = true;
        throw new MoveCancelled(p.org.id);
      }
      await deps.afterSwitch?.(p.org.id);
    } catch (err) {
      if (sure) throw err;
      // Did it commit? Ask again (a fresh connection from the pool), a few times.
      for (let attempt = 1; ; attempt++) {
        try {
          const s = await readState(p.org.id);
          if (s?.dbServerId === p.to && s.copyUid === p.copyUid) {
            logger.warn('move: the switch reported an error but had committed; going on', { orgId: p.org.id, err: describeError(err) });
            return;
          }
          throw err;
        } catch (readErr) {
          if (readErr === err) throw err;
          if (attempt >= 5) throw new SwitchUncertain(describeError(readErr));
          await sleep(200 * attempt);
        }
      }
    }
  }

  async function moveLocked(orgId: number, to: string): Promise<MoveResult> {
    const org = await repo.get(orgId);
    if (!org || org.status === 'DELETED') throw notFound('ORG_NOT_FOUND', `org ${orgId} does not exist`);
    if (!isOperational(org)) throw conflict('ORG_NOT_READY', `org ${orgId} is ${org.status}; only a provisioned org can move`);
    const before = await readState(orgId);
    if (before?.movingTo != null || before?.movingFrom != null)
      throw conflict('MOVE_IN_PROGRESS', `an earlier move of org ${orgId} did not finish; end it with bin/tenant move ${orgId} --abort`);
    const target = await servers.pickForNewTenant(to); // active, with room
    const source = await servers.get(org.dbServerId);
    if (target.id === org.dbServerId) throw conflict('ALREADY_THERE', `org ${orgId} is already on ${to}`);
    // Two entries of one physical server: the "copy" would be the database itself (SERVER_DUPLICATE when recording).
    const here = await servers.identify(source.id);
    const there = await servers.identify(target.id);
    if (here.uid === there.uid)
      throw conflict(
        'SERVER_DUPLICATE',
        `db servers ${source.name} and ${target.name} are one MySQL server (${here.describe}); nothing was moved`,
      );

    const p: Plan = { org, from: org.dbServerId, to: target.id, copyUid: randomUUID() };
    const [, meta] = await db.query(
      `UPDATE orgs SET moving_since = CURRENT_TIMESTAMP(3), moving_to_server_id = :to, moving_from_server_id = :from, moving_copy_uid = :copy
       WHERE id = :id AND db_server_id = :from AND moving_to_server_id IS NULL AND moving_from_server_id IS NULL
         AND status IN ('ACTIVE', 'SUSPENDED')`,
      { replacements: { id: orgId, to: p.to, from: p.from, copy: p.copyUid } },
    );
    if ((meta as { affectedRows?: number }).affectedRows !== 1)
      throw conflict('MOVE_IN_PROGRESS', `org ${orgId} changed meanwhile (moved, aborted or dropped); try again`);
    await events.publish({ orgId, reason: 'moving' });

    const from = await servers.adminForDatabase(p.from, org.dbName, 4);
    const fenceConn = await servers.adminForDatabase(p.from, org.dbName, 1);
    const capture = createChangeCapture(fenceConn);
    const check = cancellation(p);
    let dest: Sequelize | undefined;
    let switched = false;
    let rows: Record<string, number> = {};
    let changesApplied = 0;
    let writePauseMs = 0;
    const pause = { fenceMs: 0, lastRows: 0, catchUpMs: 0, verifyMs: 0, switchMs: 0 };
    let copyMs = 0;
    try {
      await step('PLACE_COPY', orgId, () => provisioner.placeCopy(org, p.to, p.copyUid));
      dest = await servers.adminForDatabase(p.to, org.dbName, 4);
      const there = dest;
      const tables = await dataTables(from, org.dbName);
      await step('CAPTURE', orgId, () => capture.install(tables.map((t) => t.name)));
      const limits = await copyLimits(there, batch);
      rows = await step('COPY', orgId, async () => {
        const started = performance.now();
        const copied: Record<string, number> = {};
        for (const table of tables) copied[table.name] = await bulkCopy(from, there, table, limits, () => check());
        copyMs = Math.round(performance.now() - started);
        return copied;
      });
      changesApplied += await step('CATCH_UP', orgId, () => catchUp(capture, from, there, tables, limits, { below: pauseBelow, check }));
      await step('VERIFY', orgId, () => verifyCopies(capture, from, there, tables, () => check()));
      await step('PAUSE', orgId, async () => {
        for (let attempt = 1; ; attempt++) {
          // Rows carried over since VERIFY, compared before the pause; those that change again are compared in it.
          const touched = new Map<string, Set<number>>();
          changesApplied += await catchUp(capture, from, there, tables, limits, { below: pauseBelow, touched, check });
          await verifyRows(from, there, tables, touched, capture);
          // One more short round right before the pause, so that it starts with as little as possible left.
          const recent = new Map<string, Set<number>>();
          changesApplied += await catchUp(capture, from, there, tables, limits, { below: Math.min(pauseBelow, 50), touched: recent });
          await check(true);
          const started = performance.now();
          // The pause lapses by itself (writes resume) should this process die before the switch.
          await capture.pause(pauseMaxMs * 2 + 5000);
          pause.fenceMs = Math.round(performance.now() - started);
          try {
            const last = await catchUp(capture, from, there, tables, limits, { below: 1, touched: recent });
            changesApplied += last;
            pause.lastRows = last;
            pause.catchUpMs = Math.round(performance.now() - started) - pause.fenceMs;
            await verifyRows(from, there, tables, recent);
            writePauseMs = performance.now() - started;
            pause.verifyMs = Math.round(writePauseMs) - pause.fenceMs - pause.catchUpMs;
            if (writePauseMs <= pauseMaxMs) return;
          } catch (err) {
            await capture.resume().catch(() => undefined);
            throw err;
          }
          // Too long: let the writes in, catch up again, and try once more.
          await capture.resume();
          logger.warn('move: the write pause ran over; writes resumed, trying again', {
            orgId,
            pauseMs: Math.round(writePauseMs),
            attempt,
            pause,
          });
          if (attempt >= 3) throw new Error(`the final catch-up took longer than ${pauseMaxMs} ms ${attempt} times; the move was given up`);
        }
      });
      await step('SWITCH', orgId, async () => {
        const started = performance.now();
        await capture.seal(); // from here on the old copy never takes a write again
        await switchOrg(p);
        switched = true;
        pause.switchMs = Math.round(performance.now() - started);
        writePauseMs = Math.round(writePauseMs + pause.switchMs);
      });
      logger.info('tenant move: writes were paused', { orgId, writePauseMs, ...pause });
    } catch (err) {
      if (err instanceof SwitchUncertain) {
        logger.error('move: the switch could not be confirmed; both copies are kept and writes stay paused', { orgId, err: err.message });
        throw unavailable(
          'MOVE_UNCERTAIN',
          `the switch of org ${orgId} could not be confirmed (${err.message}); nothing was dropped. Once the shared DB answers, run: bin/tenant move ${orgId} --abort`,
        );
      }
      if (!switched) {
        logger.error('tenant move failed; the tenant stays on its old server', { orgId, to, err: describeError(err) });
        await rollBack(p).catch((e: unknown) => logger.error('move: rollback incomplete', { orgId, err: describeError(e) }));
        if (err instanceof MoveCancelled) throw conflict('MOVE_ABORTED', err.message);
        throw err;
      }
    } finally {
      await Promise.allSettled([from.close(), fenceConn.close(), dest?.close()]);
    }
    // Unpublished, the change reaches other processes only as their cached entry expires: the old copy waits for that.
    const published = await events.publish({ orgId, reason: 'moved' });
    logger.info('tenant moved', { orgId, from: source.name, to: target.name, writePauseMs, copyMs, changesApplied });
    const grace = published ? graceMs : Math.max(graceMs, config.orgCacheMaxAgeMs + 1000);
    const oldCopyDropped = await step('CLEANUP', orgId, () => dropOldCopy(p, grace)).catch((err: unknown) => {
      logger.warn('move: switched, but the old copy could not be dropped; bin/tenant move <id> --abort retries', {
        orgId,
        err: describeError(err),
      });
      return false;
    });
    return { orgId, from: source.name, to: target.name, rows, changesApplied, writePauseMs, writePause: pause, copyMs, oldCopyDropped };
  }

  /**
   * Ends whatever move the org has: a live one is asked to stop (it rolls back, unless it has switched) and waited
   * for; one a crash left is rolled back (not switched) or finished (switched: the old copy dropped). Then runs `then`
   * still holding the move lock.
   */
  async function settle<T>(orgId: number, then?: (result: SettleResult) => Promise<T>): Promise<{ result: SettleResult; value?: T }> {
    const [, m] = await db.query('UPDATE orgs SET moving_since = NULL WHERE id = :id AND moving_since IS NOT NULL', {
      replacements: { id: orgId },
    });
    const asked = (m as { affectedRows?: number }).affectedRows === 1;
    const waitSec = deps.settleWaitSec ?? 120;
    return locked(
      orgId,
      waitSec,
      `the move of org ${orgId} is still running in another process after ${waitSec} s; try again`,
      async () => {
        const s = await readState(orgId);
        const org = await repo.get(orgId);
        let result: SettleResult = asked ? 'rolled-back' : 'none';
        if (s && org && s.copyUid && org.dbName && org.dbUser && org.dbPasswordEnc) {
          const moving = org as ProvisionedOrg;
          if (s.movingTo !== null) {
            await rollBack({ org: moving, from: s.movingFrom ?? s.dbServerId, to: s.movingTo, copyUid: s.copyUid });
            result = 'rolled-back';
          } else if (s.movingFrom !== null && s.movingFrom !== s.dbServerId) {
            // The move that switched may have died before it published the change: published now, it takes effect at
            // once; unpublished, the old copy waits out the longest cache life (ORG_CACHE_MAX_AGE_MS).
            const published = await events.publish({ orgId, reason: 'moved' });
            await dropOldCopy(
              { org: moving, from: s.movingFrom, to: s.dbServerId, copyUid: s.copyUid },
              published ? 0 : config.orgCacheMaxAgeMs + 1000,
            );
            result = 'cleaned-up';
          }
        }
        return { result, value: then ? await then(result) : undefined };
      },
    );
  }

  return {
    /** Moves the org's database to the server named `to`, online. */
    move(orgId: number, to: string): Promise<MoveResult> {
      return locked(
        orgId,
        0,
        `org ${orgId} is being moved already (another process holds its move); see bin/tenant move ${orgId} --abort`,
        () => moveLocked(orgId, to),
      );
    },

    /** Stops a live move (it rolls back), rolls back one a crash left, or finishes one that had switched. */
    async abort(orgId: number): Promise<Exclude<SettleResult, 'none'>> {
      const { result } = await settle(orgId);
      if (result === 'none') throw conflict('NO_MOVE_IN_PROGRESS', `org ${orgId} is not being moved`);
      return result;
    },

    /**
     * Runs fn holding the org's move lock, so that no move starts meanwhile (a restore switches the org too): refused
     * with MOVE_IN_PROGRESS while a move runs, or when one was left over (end it with `move --abort`).
     */
    async withMoveLock<T>(orgId: number, fn: () => Promise<T>): Promise<T> {
      return locked(
        orgId,
        0,
        `org ${orgId} is being moved (another process holds its move); see bin/tenant move ${orgId} --abort`,
        async () => {
          const s = await readState(orgId);
          if (s && (s.movingTo !== null || s.movingFrom !== null || s.movingSince !== null))
            throw conflict('MOVE_IN_PROGRESS', `a move of org ${orgId} did not finish; end it with bin/tenant move ${orgId} --abort`);
          return fn();
        },
      );
    },

    /** Runs fn with no move of the org running or left over (used by drop: a move never outlives its tenant). */
    async exclusive<T>(orgId: number, fn: () => Promise<T>): Promise<T> {
      return (await settle(orgId, fn)).value as T;
    },
  };
}

export type TenantMover = ReturnType<typeof createTenantMover>;
