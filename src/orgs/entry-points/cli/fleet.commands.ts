/** The fleet commands of bin/tenant: rollback (tenant migrations), pool, accounts, servers and move (migrate, status: rollout.commands.ts). */
import { intArg, parse, positiveInt, stringArg, UsageError } from '../../../platform/cli/args.js';
import type { CommandResult, Commands } from '../../../platform/cli/command.js';
import { table } from '../../../platform/cli/output.js';
import { orgIdRule, serverNameRule } from '../../domain/org.rules.js';
import type { ServerRegistry } from '../../domain/server-registry.js';
import type { TenantMigrationResult, TenantMigrations } from '../../domain/tenant-migrations.js';
import type { TenantMover } from '../../domain/tenant-mover.js';
import type { TenantPool } from '../../domain/tenant-pool.js';
import type { Provisioner } from '../../domain/provisioner.js';

/** What the fleet commands use. */
export interface FleetCommandsDeps {
  migrations: TenantMigrations;
  servers: ServerRegistry;
  mover: TenantMover;
  pool: Pick<TenantPool, 'size' | 'state' | 'refill'>;
  accounts: Pick<Provisioner, 'syncAccounts'>;
  /** Reads a secret from the environment by name (`servers add --password-env VAR`). */
  readEnvSecret(variable: string): string | undefined;
}

const RESULT_COLUMNS = ['orgId', 'dbName', 'result', 'migrations', 'ms', 'error'];

const tenantIds = (v: unknown) => (Array.isArray(v) ? v.map((x) => intArg(x, '--tenant', orgIdRule)) : undefined);

function summary(results: TenantMigrationResult[]): CommandResult {
  const failed = results.filter((r) => r.result !== 'ok');
  const counts = ['ok', 'failed', 'locked', 'not-run'].map((k) => `${k}: ${results.filter((r) => r.result === k).length}`).join(', ');
  return {
    json: { results, failed: failed.length },
    text: `${table(
      results.map((r) => ({ ...r })),
      RESULT_COLUMNS,
    )}\n${results.length} tenant(s) — ${counts}`,
    exitCode: failed.length ? 1 : 0,
    reason: `${failed.length} of ${results.length} tenant(s) not ok (${counts})`,
  };
}

export function fleetCommands(s: FleetCommandsDeps): Commands {
  return {
    async rollback({ argv }) {
      const { values, positionals } = parse(argv, {
        tenant: { type: 'string', multiple: true },
        step: { type: 'string' },
        concurrency: { type: 'string' },
        force: { type: 'boolean' },
      });
      if (positionals.length) throw new UsageError('usage: rollback (--tenant ID ... | --force) [--step N]');
      // Rolling back every tenant drops tables in every tenant database: never by accident.
      if (!values.tenant && !values.force) throw new UsageError('rollback of every tenant needs --force (or name them with --tenant ID)');
      return summary(
        await s.migrations.rollback({
          ids: tenantIds(values.tenant),
          step: values.step === undefined ? 1 : positiveInt(values.step, '--step'),
          concurrency: values.concurrency === undefined ? 4 : positiveInt(values.concurrency, '--concurrency'),
        }),
      );
    },

    async pool({ argv }) {
      const [sub = 'status', ...rest] = parse(argv, {}).positionals;
      if (rest.length || (sub !== 'status' && sub !== 'fill')) throw new UsageError('usage: pool [status|fill]');
      if (sub === 'fill' && s.pool.size === 0) throw new UsageError('the warm pool is off (TENANT_WARM_POOL_SIZE=0)');
      const made = sub === 'fill' ? await s.pool.refill() : undefined;
      const servers = await s.pool.state();
      return {
        json: { size: s.pool.size, servers, ...(made === undefined ? {} : { made }) },
        text: `${made === undefined ? '' : `made ${made} pooled tenant(s)\n`}warm pool: ${s.pool.size} per active server\n${table(
          servers as unknown as Record<string, unknown>[],
          ['server', 'ready', 'making', 'failed'],
        )}`,
      };
    },

    async accounts({ argv }) {
      const { values, positionals } = parse(argv, { concurrency: { type: 'string' }, server: { type: 'string' } });
      if (positionals.length !== 1 || positionals[0] !== 'sync')
        throw new UsageError('usage: accounts sync [--server NAME] [--concurrency N]');
      const concurrency = values.concurrency === undefined ? 4 : positiveInt(values.concurrency, '--concurrency');
      const server = values.server === undefined ? undefined : stringArg(values.server, '--server', serverNameRule);
      const { servers } = await s.accounts.syncAccounts({ concurrency, server });
      const failed = servers.flatMap((x) => x.failed);
      const unreachable = servers.filter((x) => x.error !== null);
      const rows = servers.map((x) => ({
        server: x.server,
        accounts: x.accounts,
        limits: x.error === null ? (x.limits ?? '(none: not MariaDB)') : '-',
        failed: x.error === null ? x.failed.length : `unreachable: ${x.error}`,
      }));
      return {
        json: { servers },
        text: `${table(rows, ['server', 'accounts', 'limits', 'failed'])}${failed.map((f) => `\norg ${f.orgId}: ${f.error}`).join('')}`,
        exitCode: failed.length || unreachable.length ? 1 : 0,
        reason: `${failed.length} account(s) not changed, ${unreachable.length} server(s) unreachable`,
      };
    },

    async servers({ argv }) {
      const [sub, ...rest] = argv;
      if (sub === 'list') {
        const pooled = new Map((await s.pool.state()).map((p) => [p.server, p]));
        // `tenants` counts the pool's too (they hold a database each); `pooled` is how many are ready to be claimed.
        const servers = (await s.servers.list()).map((x) => ({ ...x, pooled: pooled.get(x.name)?.ready ?? 0 }));
        return {
          json: { servers, warmPoolSize: s.pool.size },
          text: table(servers, ['id', 'name', 'host', 'port', 'adminUser', 'capacity', 'status', 'tenants', 'pooled']),
        };
      }
      if (sub === 'add') {
        const { values, positionals } = parse(rest, {
          host: { type: 'string' },
          port: { type: 'string' },
          user: { type: 'string' },
          'password-env': { type: 'string' },
          capacity: { type: 'string' },
        });
        if (positionals.length !== 1 || !values.host || !values.user) {
          throw new UsageError('usage: servers add <name> --host H --port P --user U --password-env VAR [--capacity N]');
        }
        const name = stringArg(positionals[0], 'name', serverNameRule);
        const passwordVar = values['password-env'] as string | undefined;
        const password = passwordVar ? s.readEnvSecret(passwordVar) : '';
        if (password === undefined) throw new UsageError(`environment variable ${passwordVar} is not set`);
        const server = await s.servers.add({
          name,
          host: values.host as string,
          port: values.port ? positiveInt(values.port, '--port') : 3306,
          user: values.user as string,
          password,
          capacity: values.capacity ? positiveInt(values.capacity, '--capacity') : undefined,
        });
        return {
          json: { server },
          text: `added db server ${server.name} (${server.host}:${server.port})${server.serverUid ? '' : '; warning: it could not be reached to read its identity (checked again before any move)'}`,
        };
      }
      if (sub === 'set') {
        const { values, positionals } = parse(rest, {
          capacity: { type: 'string' },
          host: { type: 'string' },
          port: { type: 'string' },
          user: { type: 'string' },
          'password-env': { type: 'string' },
        });
        const usage = 'usage: servers set <name> [--capacity N] [--host H] [--port P] [--user U] [--password-env VAR]';
        if (positionals.length !== 1 || Object.values(values).every((v) => v === undefined || typeof v === 'boolean'))
          throw new UsageError(usage);
        const passwordVar = values['password-env'] as string | undefined;
        const password = passwordVar === undefined ? undefined : s.readEnvSecret(passwordVar);
        if (passwordVar !== undefined && password === undefined) throw new UsageError(`environment variable ${passwordVar} is not set`);
        const server = await s.servers.update(stringArg(positionals[0], 'name', serverNameRule), {
          capacity: values.capacity === undefined ? undefined : positiveInt(values.capacity, '--capacity'),
          host: values.host as string | undefined,
          port: values.port === undefined ? undefined : positiveInt(values.port, '--port'),
          user: values.user as string | undefined,
          password,
        });
        const full = (server.tenants ?? 0) >= server.capacity;
        return {
          json: { server },
          text: `db server ${server.name}: capacity ${server.capacity} (${server.tenants ?? 0} tenants), ${server.adminUser}@${server.host}:${server.port}${full ? '; it is full: no new tenant goes there' : ''}`,
        };
      }
      if (sub === 'drain' || sub === 'activate') {
        const { positionals } = parse(rest, {});
        if (positionals.length !== 1) throw new UsageError(`usage: servers ${sub} <name>`);
        const server = await s.servers.setStatus(positionals[0]!, sub === 'drain' ? 'draining' : 'active');
        return {
          json: { server },
          text: `db server ${server.name} is ${server.status}${sub === 'drain' ? ': no new tenants go there; move its tenants with bin/tenant move' : ''}`,
        };
      }
      throw new UsageError('usage: servers add|list|set|drain|activate …');
    },

    async move({ argv }) {
      const { values, positionals } = parse(argv, { to: { type: 'string' }, abort: { type: 'boolean' } });
      if (positionals.length !== 1 || Boolean(values.to) === Boolean(values.abort))
        throw new UsageError('usage: move <id> --to <server> | move <id> --abort');
      const id = intArg(positionals[0], 'id', orgIdRule);
      if (values.abort) {
        const result = await s.mover.abort(id);
        return {
          json: { orgId: id, aborted: true, result },
          text:
            result === 'rolled-back'
              ? `the move of org ${id} was stopped and undone; it stays on its server`
              : `the move of org ${id} had already switched; its old copy is now dropped`,
        };
      }
      const r = await s.mover.move(id, stringArg(values.to, '--to', serverNameRule));
      const copied = Object.entries(r.rows)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ');
      return {
        json: r,
        text: `org ${id} moved from ${r.from} to ${r.to}: copied ${copied || 'nothing'} in ${r.copyMs} ms, ${r.changesApplied} changed row(s) carried over, writes paused ${r.writePauseMs} ms${r.oldCopyDropped ? '' : '; the old copy could not be dropped: see the log, then bin/tenant move ' + id + ' --abort'}`,
      };
    },
  };
}
