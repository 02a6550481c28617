/**
 * Runs a rollout from its record: wave after wave (the canary first), `concurrency` admin sessions per MySQL server
 * reused from tenant to tenant, halting past the failure threshold, stopping when paused, and recording each tenant's
 * result and version in the shared DB in batches (the record lags the tenants, never leads them). Whatever state it
 * stops in, it can be resumed from the record: tenants left running by a killed runner are pending again.
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { createSequelize } from '../../platform/db/sequelize.js';
import { lockNameOf, MigrationLockedError } from '../../platform/db/migrator.js';
import { conflict, describeError } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { MigrationSet } from '../../platform/db/migration-set.js';
import type { FinishedItem, Rollout, RolloutCounts, RolloutItem, RolloutRepository } from '../data-access/rollouts.repository.js';
import type { SchemaReferences } from './schema-doctor.js';
import type { SchemaVersions, VersionEntry } from '../data-access/schema-versions.js';
import { isConnectionError, migrateThroughSession } from './session-migration.js';
import type { ServerRegistry } from './server-registry.js';
import { MIGRATABLE_STATUSES } from './org.js';

export type RolloutEvent =
  | { event: 'rollout'; id: number; target: string; state: Rollout['state']; counts: RolloutCounts }
  | { event: 'wave'; id: number; wave: number; servers: number[] }
  | {
      event: 'tenant';
      id: number;
      orgId: number | null;
      serverId: number;
      dbName: string;
      result: FinishedItem['result'];
      migrations: string[];
      /** Migrations found applied but not recorded (a run killed between the DDL and its record): recorded, not run. */
      adopted?: string[];
      ms: number;
      error?: string;
    }
  | { event: 'stopped'; id: number; state: Rollout['state']; counts: RolloutCounts; reason?: string };

export interface RunnerDeps {
  config: Config;
  sharedDb: Sequelize;
  servers: ServerRegistry;
  versions: SchemaVersions;
  rollouts: RolloutRepository;
  set: MigrationSet;
  references: SchemaReferences;
  logger: Logger;
}

/** How often a running rollout looks at its own state (a pause from another process). */
const CONTROL_POLL_MS = 300;
/** Results are written to the shared DB this often, or every FLUSH_ITEMS tenants. */
const FLUSH_MS = 250;
const FLUSH_ITEMS = 500;

/**
 * Runs fn holding the fleet's rollout lock (one runner per control plane at a time); a held lock is refused at once
 * with 409 ROLLOUT_RUNNING. The lock lives on its own connection: a runner killed with SIGKILL releases it.
 */
export async function withRunnerLock<T>(config: Config, fn: () => Promise<T>): Promise<T> {
  const db = createSequelize({ ...config.db, database: config.db.name, poolMax: 1, connectTimeoutMs: 3000, idleMs: 3_600_000 });
  const name = lockNameOf(`tenancy:rollout:${config.db.name}`);
  try {
    const [got] = await db.query<{ got: number | null }>('SELECT GET_LOCK(?, 0) AS got', { replacements: [name], type: QueryTypes.SELECT });
    if (got?.got !== 1) throw conflict('ROLLOUT_RUNNING', 'another process is running a rollout (see bin/tenant rollout status)');
    try {
      return await fn();
    } finally {
      await db.query('SELECT RELEASE_LOCK(?)', { replacements: [name] }).catch(() => undefined);
    }
  } finally {
    await db.close();
  }
}

/** Whether a rollout runner holds the lock now (from any process). */
export async function runnerActive(config: Config, sharedDb: Sequelize): Promise<boolean> {
  const [r] = await sharedDb.query<{ free: number | null }>('SELECT IS_FREE_LOCK(?) AS free', {
    replacements: [lockNameOf(`tenancy:rollout:${config.db.name}`)],
    type: QueryTypes.SELECT,
  });
  return r?.free === 0;
}

/** Runs rollout `id` (the caller holds the runner lock) until it is done, halted or paused; answers the final record. */
export async function runRollout(deps: RunnerDeps, id: number, onEvent: (e: RolloutEvent) => void = () => {}): Promise<Rollout> {
  const { config, servers, versions, rollouts, set, references } = deps;
  let rollout = (await rollouts.get(id))!;
  await rollouts.requeue(id); // what a killed runner left running starts again (its lock per tenant makes that safe)
  const failedBefore = (await rollouts.counts(id)).failed;
  let failedNow = 0;
  let stop: { state: 'halted' | 'paused'; reason: string } | undefined;
  onEvent({ event: 'rollout', id, target: rollout.target, state: rollout.state, counts: await rollouts.counts(id) });

  // Results and versions go to the shared DB together, in batches, one flush at a time.
  let buffer: { finished: FinishedItem; version?: VersionEntry }[] = [];
  let started: number[] = [];
  let flushing = Promise.resolve();
  const flush = () => {
    // One flush at a time; a failed one puts its batch back for the next (the record only lags meanwhile).
    flushing = flushing
      .catch(() => undefined)
      .then(async () => {
        const batch = buffer;
        const starts = started;
        buffer = [];
        started = [];
        if (!batch.length && !starts.length) return;
        try {
          await deps.sharedDb.transaction(async (transaction) => {
            await rollouts.markStarted(starts, transaction);
            await rollouts.finish(
              batch.map((b) => b.finished),
              transaction,
            );
            await versions.record(
              batch.flatMap((b) => (b.version ? [b.version] : [])),
              transaction,
            );
          });
        } catch (err) {
          buffer.unshift(...batch);
          started.unshift(...starts);
          throw err;
        }
      });
    return flushing;
  };
  const flusher = setInterval(
    () => void flush().catch((err: unknown) => deps.logger.error('rollout: recording failed', { err: describeError(err) })),
    FLUSH_MS,
  );
  const control = setInterval(() => {
    void rollouts
      .get(id)
      .then((r) => {
        if (r?.state === 'paused' && !stop) stop = { state: 'paused', reason: `rollout ${id} was paused` };
      })
      .catch(() => undefined); // the next poll asks again
  }, CONTROL_POLL_MS);
  const sessions = new Map<number, Sequelize[]>();
  const sessionFor = async (serverId: number, lane: number) => {
    let list = sessions.get(serverId);
    if (!list) sessions.set(serverId, (list = []));
    return (list[lane] ??= await servers.adminSession(serverId));
  };

  /** Migrates one tenant where its org is now (a move may have changed its server), never throwing. */
  async function runItem(item: RolloutItem, laneSession: () => Promise<Sequelize>): Promise<void> {
    const startedAt = Date.now();
    started.push(item.id);
    let serverId = item.serverId;
    let dbName = item.dbName;
    const done = (f: Omit<FinishedItem, 'item' | 'rolloutId' | 'ms'>, version?: VersionEntry, adopted: string[] = []) => {
      const ms = Date.now() - startedAt;
      buffer.push({ finished: { ...f, item, rolloutId: id, ms }, version });
      if (buffer.length >= FLUSH_ITEMS) void flush().catch(() => undefined);
      onEvent({
        event: 'tenant',
        id,
        orgId: item.orgId,
        serverId,
        dbName,
        result: f.result,
        migrations: f.migrations,
        ...(adopted.length ? { adopted } : {}),
        ms,
        ...(f.error ? { error: f.error } : {}),
      });
    };
    const operational = (org: RolloutItem['org']) => org !== null && (MIGRATABLE_STATUSES as readonly string[]).includes(org.status);
    const skip = (org: RolloutItem['org']) =>
      done({ state: 'done', result: 'skipped', migrations: [], error: `org ${item.orgId} is ${org?.status ?? 'gone'}` });
    if (item.orgId !== null && !operational(item.org)) return skip(item.org);

    /** Migrates the database where `org` says it is (a move changes its server): on a session of its own if not the lane's. */
    const attempt = async (org: RolloutItem['org']) => {
      let own: Sequelize | undefined;
      if (org?.serverId && org.dbName && (org.serverId !== item.serverId || org.dbName !== item.dbName)) {
        serverId = org.serverId;
        dbName = org.dbName;
        own = await servers.adminSession(serverId);
      }
      try {
        const session = own ?? (await laneSession());
        return await migrateThroughSession({ session, serverId, dbName, set, lockWaitSec: config.migrationLockWaitSec, references });
      } finally {
        await own?.close();
      }
    };

    try {
      let r: Awaited<ReturnType<typeof attempt>>;
      try {
        r = await attempt(item.org);
      } catch (err) {
        // Its org may have moved (or been dropped) since its location was read: look once more, and follow it.
        const now = item.orgId === null ? undefined : await rollouts.orgOf(item.orgId).catch(() => undefined);
        if (now === undefined) throw err;
        if (!operational(now)) return skip(now);
        if (now?.serverId === serverId && now.dbName === dbName) throw err;
        r = await attempt(now);
      }
      if (r.adopted.length)
        deps.logger.warn('rollout: migrations found applied but unrecorded (a run was killed after its DDL); recorded', {
          dbName,
          adopted: r.adopted,
        });
      done(
        { state: 'done', result: 'ok', migrations: r.applied, error: null },
        { serverId, dbName, orgId: item.orgId, version: r.version },
        r.adopted,
      );
    } catch (err) {
      const error = describeError(err);
      failedNow++;
      done(
        { state: 'failed', result: err instanceof MigrationLockedError ? 'locked' : 'failed', migrations: [], error },
        { serverId, dbName, orgId: item.orgId, version: null, error, unreachable: isConnectionError(err) },
      );
      if (!rollout.skipFailing && failedNow > rollout.maxFailures && !stop)
        stop = {
          state: 'halted',
          reason: `${failedBefore + failedNow} tenant(s) failed (more than --max-failures ${rollout.maxFailures})`,
        };
    }
  }

  /** One server's lanes for a wave: each takes the next pending tenant until the wave is empty or the rollout stops. */
  async function runServer(wave: number, serverId: number): Promise<void> {
    const batch = Math.max(rollout.concurrency * 8, 64);
    const queue: RolloutItem[] = [];
    let reading: Promise<void> | undefined;
    let exhausted = false;
    let after = 0;
    const next = async (): Promise<RolloutItem | undefined> => {
      while (!queue.length && !exhausted) {
        reading ??= rollouts.pending(id, wave, serverId, after, batch).then((items) => {
          queue.push(...items);
          after = items.at(-1)?.id ?? after;
          if (items.length < batch) exhausted = true;
          reading = undefined;
        });
        await reading;
      }
      return queue.shift();
    };
    const lane = async (n: number) => {
      for (;;) {
        if (stop) return;
        const item = await next();
        if (!item) return;
        await runItem(item, () => sessionFor(serverId, n));
      }
    };
    await Promise.all(Array.from({ length: rollout.concurrency }, (_, n) => lane(n)));
  }

  try {
    let swept = false;
    for (;;) {
      if (stop) break;
      await flush(); // the wave's results are in the record before it is asked what is left
      const next = await rollouts.nextWave(id);
      if (!next) {
        // New tenants made meanwhile by code that did not migrate them to the target join as one last wave.
        if (
          !swept &&
          rollout.scope === 'fleet' &&
          (await rollouts.addStragglers(id, (await rollouts.maxWave(id)) + 1, rollout.target)) > 0
        ) {
          swept = true;
          continue;
        }
        break;
      }
      onEvent({ event: 'wave', id, wave: next.wave, servers: next.servers });
      await Promise.all(next.servers.map((s) => runServer(next.wave, s)));
    }
  } finally {
    clearInterval(flusher);
    clearInterval(control);
    await flush();
    await Promise.allSettled([...sessions.values()].flat().map((s) => s.close()));
  }
  if (stop) await rollouts.setState(id, stop.state, ['running'], stop.reason);
  else await rollouts.setState(id, 'done', ['running', 'paused', 'halted'], null);
  rollout = (await rollouts.get(id))!;
  onEvent({ event: 'stopped', id, state: rollout.state, counts: await rollouts.counts(id), ...(stop ? { reason: stop.reason } : {}) });
  return rollout;
}
