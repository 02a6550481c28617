/**
 * Fleet schema rollouts: `migrate` decides from the version record (verified cheaply against each database's own
 * schema_migrations, a few queries per server) which tenants need work, records a rollout with its waves and runs it;
 * `resume`, `retry` and `pause` operate a recorded rollout; `fleet` and `doctor` answer for the whole fleet.
 */
import type { Sequelize } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { TENANT_MIGRATIONS_DIR } from '../../platform/db/migrator.js';
import { conflict, notFound } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import { loadMigrationSet, type MigrationSet } from '../../platform/db/migration-set.js';
import { runRollout, runnerActive, withRunnerLock, type RolloutEvent, type RunnerDeps } from './rollout-runner.js';
import type { Rollout, RolloutCounts, RolloutItem, RolloutRepository } from '../data-access/rollouts.repository.js';
import { createSchemaReferences, groupByServer, readFleetApplied, runDoctor, type DriftReport } from './schema-doctor.js';
import type { FleetSummary, SchemaVersions, TenantDbRef } from '../data-access/schema-versions.js';
import type { ServerRegistry } from './server-registry.js';

export interface RolloutStatus {
  id: number;
  state: Rollout['state'];
  counts: RolloutCounts;
  target: string;
  scope: Rollout['scope'];
  /** A runner process is working on it now (a `running` rollout without one was killed: resume it). */
  runner: boolean;
  /** Tenants per second over what finished so far, and the seconds left at that pace (null: not known yet). */
  rate: number | null;
  etaSeconds: number | null;
  maxFailures: number;
  skipFailing: boolean;
  concurrency: number;
  canary: number;
  note: string | null;
  supersededBy: number | null;
  createdAt: Date;
  finishedAt: Date | null;
  failures: { orgId: number | null; serverId: number; dbName: string; result: string | null; error: string | null }[];
}

export interface MigrateOptions {
  /** Only these orgs (each is migrated, whatever its recorded version). */
  ids?: readonly number[];
  /** Tenants in the first wave (default: 1% of them, at least 1). */
  canary?: number;
  maxFailures: number;
  skipFailing: boolean;
  /** Tenants migrated at once on each MySQL server. */
  concurrency: number;
  onEvent?: (e: RolloutEvent) => void;
}

/** Each wave is this many times the one before. */
const WAVE_GROWTH = 10;

/** Orders tenants round-robin over their servers (each wave spans every server) and gives each its wave. */
export function planWaves<T extends TenantDbRef>(refs: readonly T[], canary: number): (T & { wave: number })[] {
  const lists = [...groupByServer(refs).values()];
  const ordered: T[] = [];
  for (let i = 0; ordered.length < refs.length; i++) for (const l of lists) if (l[i]) ordered.push(l[i]!);
  const out: (T & { wave: number })[] = [];
  let wave = canary > 0 ? 0 : 1;
  let size = canary > 0 ? canary : ordered.length;
  let left = size;
  for (const r of ordered) {
    if (left === 0) {
      wave++;
      size *= WAVE_GROWTH;
      left = size;
    }
    out.push({ ...r, wave });
    left--;
  }
  return out;
}

/** Creates the fleet migration service. */
export function createFleetMigrations(deps: {
  config: Config;
  sharedDb: Sequelize;
  servers: ServerRegistry;
  versions: SchemaVersions;
  rollouts: RolloutRepository;
  logger: Logger;
}) {
  const { config, servers, versions, rollouts } = deps;
  let setPromise: Promise<MigrationSet> | undefined;
  const migrationSet = () => (setPromise ??= loadMigrationSet(config.tenantMigrationsDir ?? TENANT_MIGRATIONS_DIR));
  const runnerDeps = async (): Promise<RunnerDeps> => {
    const set = await migrationSet();
    return { ...deps, set, references: createSchemaReferences({ config, servers, set }) };
  };

  /** The tenants a migrate works on; `upToDate`: the others (recorded and verified at the latest version). */
  async function targets(set: MigrationSet, ids?: readonly number[]): Promise<{ refs: TenantDbRef[]; upToDate: number }> {
    if (ids?.length) {
      const found = await versions.tenants(ids);
      const missing = ids.filter((id) => !found.some((t) => t.orgId === id));
      if (missing.length) throw new Error(`unknown tenant(s): ${missing.join(', ')}`);
      return { refs: found, upToDate: 0 };
    }
    const all = await versions.tenants();
    const recordedLatest = all.filter((t) => t.version === set.latest && !t.failed);
    const applied = await readFleetApplied(servers, recordedLatest);
    const verified = new Set(
      recordedLatest
        .filter((t) => {
          const a = applied.get(`${t.serverId}:${t.dbName}`);
          return typeof a === 'object' && 'last' in a && a.last === set.latest && a.count === set.names.length;
        })
        .map((t) => t.orgId),
    );
    return { refs: all.filter((t) => !verified.has(t.orgId)), upToDate: verified.size };
  }

  async function find(id?: number): Promise<Rollout> {
    const r = id === undefined ? await rollouts.latest() : await rollouts.get(id);
    if (!r) throw notFound('ROLLOUT_NOT_FOUND', id === undefined ? 'no rollout has been made yet' : `rollout ${id} does not exist`);
    return r;
  }

  async function operable(id?: number): Promise<Rollout> {
    const r = await find(id);
    if (r.supersededBy !== null)
      throw conflict('ROLLOUT_SUPERSEDED', `rollout ${r.id} was superseded by rollout ${r.supersededBy}: operate that one`);
    return r;
  }

  return {
    migrationSet,
    /** Creates and runs a rollout of every tenant not at the latest version (or of the ones named). */
    async migrate(o: MigrateOptions): Promise<{ latest: string | null; upToDate: number; rollout?: Rollout }> {
      const set = await migrationSet();
      return withRunnerLock(config, async () => {
        if (!set.latest) return { latest: null, upToDate: 0 };
        const { refs, upToDate } = await targets(set, o.ids);
        if (!refs.length) return { latest: set.latest, upToDate };
        const canary = Math.min(refs.length, o.canary ?? Math.max(1, Math.ceil(refs.length / 100)));
        const id = await rollouts.create(
          {
            target: set.latest,
            scope: o.ids?.length ? 'tenants' : 'fleet',
            maxFailures: o.maxFailures,
            skipFailing: o.skipFailing,
            concurrency: o.concurrency,
            canary,
          },
          planWaves(refs, canary),
        );
        // A fleet rollout covers whatever unfinished ones left; one of named tenants leaves them to be resumed.
        if (!o.ids?.length) await rollouts.supersedeUnfinished(id);
        return { latest: set.latest, upToDate, rollout: await runRollout(await runnerDeps(), id, o.onEvent) };
      });
    },
    /** Continues a paused or halted rollout, or one whose runner was killed; failed tenants stay failed. */
    async resume(id: number | undefined, onEvent?: (e: RolloutEvent) => void): Promise<Rollout> {
      return withRunnerLock(config, async () => {
        const r = await operable(id);
        if (r.state === 'done') return r;
        await rollouts.setState(r.id, 'running', ['paused', 'halted', 'running'], null);
        return runRollout(await runnerDeps(), r.id, onEvent);
      });
    },
    /** Runs the failed tenants of a rollout again (and continues whatever was still pending). */
    async retry(id: number | undefined, onEvent?: (e: RolloutEvent) => void): Promise<{ rollout: Rollout; retried: number }> {
      return withRunnerLock(config, async () => {
        const r = await operable(id);
        const retried = await rollouts.resetFailed(r.id);
        if (!retried && r.state === 'done') return { rollout: r, retried };
        await rollouts.setState(r.id, 'running', ['paused', 'halted', 'running', 'done'], null);
        return { rollout: await runRollout(await runnerDeps(), r.id, onEvent), retried };
      });
    },
    /** Asks the runner to stop starting tenants (those running finish); a rollout with no runner just becomes paused. */
    async pause(id?: number): Promise<Rollout> {
      const r = await operable(id);
      if (!(await rollouts.setState(r.id, 'paused', ['running'])))
        throw conflict('ROLLOUT_NOT_RUNNING', `rollout ${r.id} is ${r.state}, not running`);
      return (await rollouts.get(r.id))!;
    },
    /** A rollout's state, counts, failures, rate and ETA. */
    async status(id?: number): Promise<RolloutStatus> {
      const r = await find(id);
      const [counts, pace, failures, runner] = await Promise.all([
        rollouts.counts(r.id),
        rollouts.pace(r.id),
        rollouts.failures(r.id, 50),
        runnerActive(config, deps.sharedDb),
      ]);
      const seconds = pace.first && pace.last ? (pace.last.getTime() - pace.first.getTime()) / 1000 : 0;
      const rate = seconds > 0 ? pace.finished / seconds : null;
      return {
        id: r.id,
        state: r.state,
        counts,
        target: r.target,
        scope: r.scope,
        runner: runner && r.state === 'running',
        rate: rate === null ? null : Math.round(rate * 10) / 10,
        etaSeconds: rate ? Math.ceil((counts.pending + counts.running) / rate) : null,
        maxFailures: r.maxFailures,
        skipFailing: r.skipFailing,
        concurrency: r.concurrency,
        canary: r.canary,
        note: r.note,
        supersededBy: r.supersededBy,
        createdAt: r.createdAt,
        finishedAt: r.finishedAt,
        failures: failures.map((f) => ({ orgId: f.orgId, serverId: f.serverId, dbName: f.dbName, result: f.result, error: f.error })),
      };
    },
    /** Every tenant of a rollout with its state. */
    items(id: number): Promise<RolloutItem[]> {
      return rollouts.items(id);
    },
    /** Tenants per version, pending, failed, unreachable: from the shared DB only. */
    async fleet(): Promise<FleetSummary> {
      return versions.fleet((await migrationSet()).latest);
    },
    /** Every operational tenant's schema against the reference of its version. */
    async doctor(): Promise<DriftReport> {
      return runDoctor({ ...(await runnerDeps()), versions });
    },
  };
}

export type FleetMigrations = ReturnType<typeof createFleetMigrations>;
