/** The fleet schema commands of bin/tenant: migrate (a rollout), rollout status|pause|resume|retry, status, doctor. */
import type { FleetMigrations, RolloutStatus } from '../../domain/fleet-migrations.js';
import type { RolloutEvent } from '../../domain/rollout-runner.js';
import type { Rollout, RolloutItem } from '../../data-access/rollouts.repository.js';
import type { TenantMigrationResult, TenantMigrations } from '../../domain/tenant-migrations.js';
import { orgIdRule } from '../../domain/org.rules.js';
import { intArg, parse, positiveInt, UsageError } from '../../../platform/cli/args.js';
import type { CommandContext, CommandResult, Commands } from '../../../platform/cli/command.js';
import { formatDuration, type ProgressBar } from '../../../platform/cli/progress-bar.js';
import { table } from '../../../platform/cli/output.js';

/** What the fleet schema commands use. */
export interface RolloutCommandsDeps {
  fleet: FleetMigrations;
  migrations: TenantMigrations;
  /** Migrates the shared DB (under its lock); answers the migrations applied. */
  migrateShared(): Promise<string[]>;
  sharedDbName: string;
}

const RESULT_COLUMNS = ['orgId', 'dbName', 'result', 'migrations', 'ms', 'error'];
/** Above this many tenants the text output lists only the ones that are not ok. */
const TABLE_MAX = 50;

const tenantIds = (v: unknown) => (Array.isArray(v) ? v.map((x) => intArg(x, '--tenant', orgIdRule)) : undefined);
const nonNegative = (v: unknown, name: string) => (v === '0' ? 0 : positiveInt(v, name));

/** A tenant of a rollout as migrate has always reported it: ok · failed · locked · not-run (· skipped). */
function asResult(i: RolloutItem): TenantMigrationResult {
  const result: TenantMigrationResult['result'] =
    i.state === 'done'
      ? i.result === 'skipped'
        ? 'skipped'
        : 'ok'
      : i.state === 'failed'
        ? i.result === 'locked'
          ? 'locked'
          : 'failed'
        : 'not-run';
  return {
    orgId: i.orgId ?? 0,
    dbName: i.dbName,
    result,
    migrations: i.migrations,
    ms: i.ms ?? 0,
    ...(i.error && i.state === 'failed' ? { error: i.error } : {}),
  };
}

/** What the person or the script sees while a rollout runs: JSON lines, or a progress bar with failures above it. */
function watch(c: CommandContext): { onEvent: (e: RolloutEvent) => void } {
  let bar: ProgressBar | undefined;
  return {
    onEvent(e) {
      c.emit?.(e);
      if (e.event === 'rollout') {
        c.progress(
          `rollout ${e.id} → ${e.target}: ${e.counts.pending} tenant(s) to migrate (${e.counts.done} done, ${e.counts.failed} failed before)`,
        );
        bar = c.progressBar?.(e.counts.pending);
      } else if (e.event === 'tenant') {
        if (e.result === 'failed' || e.result === 'locked') c.progress(`tenant ${e.orgId ?? e.dbName} ${e.result}: ${e.error}`);
        bar?.tick(e.result === 'failed' || e.result === 'locked');
      } else if (e.event === 'stopped') {
        bar?.end();
        bar = undefined;
      }
    },
  };
}

const describeStatus = (s: RolloutStatus) =>
  [
    `rollout ${s.id} → ${s.target}: ${s.state}${s.state === 'running' && !s.runner ? ' (no runner: it was killed; continue with bin/tenant rollout resume ' + s.id + ')' : ''}${s.supersededBy ? ` (superseded by rollout ${s.supersededBy})` : ''}`,
    `  pending ${s.counts.pending} · running ${s.counts.running} · done ${s.counts.done} · failed ${s.counts.failed}`,
    `  ${s.rate === null ? 'rate unknown yet' : `${s.rate} tenants/s`}${s.etaSeconds === null || s.state === 'done' ? '' : ` · ETA ${formatDuration(s.etaSeconds)}`} · ${s.concurrency} per server, canary ${s.canary}, ${s.skipFailing ? '--skip-failing' : `halts past ${s.maxFailures} failure(s)`}`,
    ...(s.note ? [`  ${s.note}`] : []),
    ...s.failures.map((f) => `  failed: org ${f.orgId ?? '-'} (${f.dbName} on server ${f.serverId}) ${f.result}: ${f.error}`),
  ].join('\n');

/** The end of a rollout run: every tenant's result, the counts, and the exit code (0 only when all are done). */
async function rolloutOutcome(
  s: RolloutCommandsDeps,
  rollout: Rollout,
  extra: Record<string, unknown>,
  nested: boolean,
): Promise<CommandResult> {
  const [status, items] = await Promise.all([s.fleet.status(rollout.id), s.fleet.items(rollout.id)]);
  const results = items.map(asResult);
  const notOk = results.filter((r) => r.result !== 'ok' && r.result !== 'skipped');
  const shown = results.length <= TABLE_MAX ? results : notOk;
  const summary = { id: status.id, state: status.state, counts: status.counts };
  const json = nested
    ? { ...extra, rollout: summary, results, failed: notOk.length }
    : { ...status, ...extra, results, failed: notOk.length };
  const first = status.failures[0];
  const reason =
    status.state === 'halted'
      ? `rollout ${status.id} halted: ${status.note ?? 'too many failures'}; first: org ${first?.orgId ?? '-'}: ${first?.error ?? '?'}; fix it, then: bin/tenant rollout retry ${status.id}`
      : status.state === 'paused'
        ? `rollout ${status.id} paused with ${status.counts.pending} tenant(s) pending; continue with: bin/tenant rollout resume ${status.id}`
        : `rollout ${status.id}: ${notOk.length} of ${results.length} tenant(s) not ok (failed: ${status.failures
            .slice(0, 5)
            .map((f) => `org ${f.orgId ?? f.dbName}`)
            .join(', ')}); run them again with: bin/tenant rollout retry ${status.id}`;
  return {
    json,
    text: `${shown.length ? `${table(shown as unknown as Record<string, unknown>[], RESULT_COLUMNS)}\n` : ''}${describeStatus(status)}`,
    exitCode: status.state === 'done' && notOk.length === 0 ? 0 : 1,
    reason,
  };
}

function optionalId(argv: string[], usage: string): number | undefined {
  const { positionals } = parse(argv, {});
  if (positionals.length > 1) throw new UsageError(`usage: ${usage}`);
  return positionals[0] === undefined ? undefined : positiveInt(positionals[0], 'rollout id');
}

/** Builds the fleet schema commands. */
export function rolloutCommands(s: RolloutCommandsDeps): Commands {
  return {
    async migrate(c) {
      const { argv, progress } = c;
      const { values, positionals } = parse(argv, {
        tenant: { type: 'string', multiple: true },
        concurrency: { type: 'string' },
        canary: { type: 'string' },
        'max-failures': { type: 'string' },
        'skip-failing': { type: 'boolean' },
        'shared-only': { type: 'boolean' },
      });
      if (positionals.length)
        throw new UsageError(
          'usage: migrate [--canary N] [--max-failures N] [--skip-failing] [--concurrency N] [--tenant ID ...] [--shared-only]',
        );
      const concurrency = values.concurrency === undefined ? 4 : positiveInt(values.concurrency, '--concurrency');
      const canary = values.canary === undefined ? undefined : nonNegative(values.canary, '--canary');
      const maxFailures = values['max-failures'] === undefined ? 0 : nonNegative(values['max-failures'], '--max-failures');
      const shared = await s.migrateShared();
      progress(`shared DB ${s.sharedDbName}: ${shared.length ? `applied ${shared.join(', ')}` : 'up to date'}`);
      if (values['shared-only'])
        return { json: { shared, results: [], failed: 0 }, text: `shared DB: ${shared.length} migration(s) applied` };
      const r = await s.fleet.migrate({
        ids: tenantIds(values.tenant),
        canary,
        maxFailures,
        skipFailing: Boolean(values['skip-failing']),
        concurrency,
        onEvent: watch(c).onEvent,
      });
      if (!r.rollout)
        return {
          json: { shared, latest: r.latest, upToDate: r.upToDate, rollout: null, results: [], failed: 0 },
          text: `every tenant is at ${r.latest ?? '(no tenant migrations)'}: ${r.upToDate} tenant(s), checked against their own schema_migrations; nothing to do`,
        };
      return rolloutOutcome(s, r.rollout, { shared, latest: r.latest, upToDate: r.upToDate }, true);
    },

    async rollout(c) {
      const [sub, ...rest] = c.argv;
      const usage = 'rollout status|pause|resume|retry [ID]';
      if (sub === 'status') {
        const st = await s.fleet.status(optionalId(rest, usage));
        return { json: st, text: describeStatus(st) };
      }
      if (sub === 'pause') {
        const r = await s.fleet.pause(optionalId(rest, usage));
        const st = await s.fleet.status(r.id);
        return {
          json: st,
          text: `rollout ${r.id} paused: tenants running now finish, no new one starts; continue with bin/tenant rollout resume ${r.id}`,
        };
      }
      if (sub === 'resume' || sub === 'retry') {
        const id = optionalId(rest, usage);
        const { onEvent } = watch(c);
        const rollout = sub === 'resume' ? await s.fleet.resume(id, onEvent) : (await s.fleet.retry(id, onEvent)).rollout;
        return rolloutOutcome(s, rollout, {}, false);
      }
      throw new UsageError(`usage: ${usage}`);
    },

    async status({ argv }) {
      const { values, positionals } = parse(argv, { tenant: { type: 'string', multiple: true } });
      if (positionals.length) throw new UsageError('usage: status [--tenant ID ...]');
      const ids = tenantIds(values.tenant);
      if (ids) {
        // One tenant's own migration table, read through its database.
        const tenants = await s.migrations.status({ ids, concurrency: 4 });
        return {
          json: { tenants },
          text: table(
            tenants.map((t) => ({ ...t, applied: t.applied.length, latest: t.applied.at(-1) ?? null })),
            ['orgId', 'dbName', 'applied', 'latest', 'pending', 'error'],
          ),
          exitCode: tenants.some((t) => t.error) ? 1 : 0,
          reason: `${tenants.filter((t) => t.error).length} tenant(s) could not be read`,
        };
      }
      const f = await s.fleet.fleet();
      const rows = Object.entries(f.versions)
        .sort(([a], [b]) => b.localeCompare(a))
        .map(([version, tenants]) => ({ version: version === f.latest ? `${version} (latest)` : version, tenants }));
      return {
        json: f,
        text: [
          `${f.tenants} tenant(s); latest ${f.latest ?? '-'}: ${f.tenants - f.pending} at it, ${f.pending} pending`,
          `  failed ${f.failed} (unreachable ${f.unreachable}), never recorded ${f.unrecorded}`,
          '',
          table(rows, ['version', 'tenants']),
        ].join('\n'),
      };
    },

    async doctor({ argv }) {
      const { positionals } = parse(argv, {});
      if (positionals.length) throw new UsageError('usage: doctor');
      const report = await s.fleet.doctor();
      const n = report.drifted.length;
      // Advice on each server's table caches, after the verdict: it never makes the exit code.
      const advice = report.servers.flatMap((x) => x.advice.map((a) => `advice: server ${x.serverId}: ${a}`));
      return {
        json: report,
        text:
          (n
            ? report.drifted
                .map(
                  (d) => `org ${d.orgId ?? '-'} (${d.dbName} on server ${d.serverId}):\n${d.differences.map((x) => `  - ${x}`).join('\n')}`,
                )
                .join('\n') + `\n${n} of ${report.checked} tenant(s) drifted`
            : `${report.checked} tenant(s) checked: every schema is what its version's migrations make`) +
          advice.map((a) => `\n${a}`).join(''),
        exitCode: n ? 1 : 0,
        reason: `${n} of ${report.checked} tenant(s) drifted from their version's schema (see the list on stdout)`,
      };
    },
  };
}
