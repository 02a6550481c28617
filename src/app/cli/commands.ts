/** The commands of bin/tenant: each parses its arguments, calls a service, and returns what to print. */
import { readEnvSecret } from '../../../config/config.js';
import type { Deps } from '../../deps.js';
import { migrateShared } from '../../platform/db/shared-db.js';
import { adminView, publicView } from '../../orgs/entry-points/http/views.js';
import { ORG_STATUSES, orgNameSchema, type OrgStatus } from '../../orgs/domain/org.js';
import type { TenantMigrationResult } from '../../orgs/domain/tenant-migrations.js';
import { nonZeroInt, parse, positiveInt, UsageError } from './args.js';
import { table } from './output.js';

export interface CommandResult {
  /** What --json prints on stdout. */
  json: unknown;
  /** What a person sees on stdout. */
  text: string;
  /** Non-zero when the command ran but something in it failed (e.g. one tenant's migration). */
  exitCode?: number;
  /** With a non-zero exitCode: the one-line reason printed on stderr. */
  reason?: string;
}

export interface CommandContext {
  deps: Deps;
  argv: string[];
  /** Progress lines (stderr on a TTY). */
  progress: (line: string) => void;
}

type Command = (c: CommandContext) => Promise<CommandResult>;

const ORG_COLUMNS = ['id', 'name', 'status', 'creditBalance', 'dbName', 'provisioningStep', 'lastError'];
const RESULT_COLUMNS = ['orgId', 'dbName', 'result', 'migrations', 'ms', 'error'];

const tenantIds = (v: unknown) => (Array.isArray(v) ? v.map((x) => positiveInt(x, '--tenant')) : undefined);
const one = (argv: string[], usage: string) => {
  const { values, positionals } = parse(argv, {});
  if (positionals.length !== 1) throw new UsageError(`usage: ${usage}`);
  return { id: positiveInt(positionals[0], 'id'), values };
};
const orgResult = (org: Parameters<typeof adminView>[0]): CommandResult => ({
  json: { org: adminView(org) },
  text: table([adminView(org)], ORG_COLUMNS),
});

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

export const commands: Record<string, Command> = {
  async create({ deps, argv }) {
    const { values, positionals } = parse(argv, { credits: { type: 'string' }, server: { type: 'string' } });
    if (positionals.length !== 1 || !positionals[0]!.trim()) throw new UsageError('usage: create <name> [--credits N] [--server NAME]');
    const credits = values.credits === undefined ? deps.config.defaultCredits : Number(values.credits);
    if (!Number.isSafeInteger(credits) || credits < 0) throw new UsageError('--credits must be a non-negative integer');
    const checked = orgNameSchema.validate(positionals[0]);
    if (checked.error) throw new UsageError(`name: ${checked.error.message.replace(/^"value" /, '')}`);
    const name = checked.value;
    const { org, apiKey } = await deps.orgs.create({ name, credits, server: values.server as string | undefined });
    return {
      json: { org: publicView(org), apiKey },
      text: `${table([adminView(org)], ORG_COLUMNS)}\n\nAPI key (shown once, store it now): ${apiKey}\nTry: curl -H "X-Org-Id: ${org.id}" -H "Authorization: Bearer ${apiKey}" http://127.0.0.1:${deps.config.port}/org`,
    };
  },

  async list({ deps, argv }) {
    const { values } = parse(argv, { status: { type: 'string' } });
    const status = values.status as OrgStatus | undefined;
    if (status && !ORG_STATUSES.includes(status)) throw new UsageError(`--status must be one of ${ORG_STATUSES.join(', ')}`);
    const orgs = [];
    for (let after = 0; ;) {
      const page = await deps.orgs.list({ limit: 500, after, statuses: status ? [status] : undefined });
      orgs.push(...page.map(adminView));
      if (page.length < 500) break;
      after = page[page.length - 1]!.id;
    }
    return { json: { orgs }, text: table(orgs, ORG_COLUMNS) };
  },

  async show({ deps, argv }) {
    const { id } = one(argv, 'show <id>');
    const org = await deps.orgs.get(id);
    const keys = await deps.orgs.listKeys(id);
    const view = adminView(org);
    return {
      json: { org: view, keys: keys.map(({ keyHash: _hash, ...k }) => k) },
      text: `${Object.entries(view)
        .map(([k, v]) => `${k.padEnd(17)} ${v instanceof Date ? v.toISOString() : JSON.stringify(v)}`)
        .join('\n')}\nactive keys       ${keys.filter((k) => !k.revokedAt).length}`,
    };
  },

  async migrate({ deps, argv, progress }) {
    const { values, positionals } = parse(argv, {
      tenant: { type: 'string', multiple: true },
      concurrency: { type: 'string' },
      'skip-failing': { type: 'boolean' },
      'shared-only': { type: 'boolean' },
    });
    if (positionals.length) throw new UsageError('usage: migrate [--tenant ID ...] [--concurrency N] [--skip-failing] [--shared-only]');
    const concurrency = values.concurrency === undefined ? 4 : positiveInt(values.concurrency, '--concurrency');
    const shared = await migrateShared(deps.sharedDb, deps.config.db.name, deps.config.migrationLockWaitSec);
    progress(`shared DB ${deps.config.db.name}: ${shared.length ? `applied ${shared.join(', ')}` : 'up to date'}`);
    if (values['shared-only'])
      return { json: { shared, results: [], failed: 0 }, text: `shared DB: ${shared.length} migration(s) applied` };
    const results = await deps.migrations.migrate({
      ids: tenantIds(values.tenant),
      concurrency,
      skipFailing: Boolean(values['skip-failing']),
      onResult: (r, done, total) =>
        progress(
          `[${done}/${total}] tenant ${r.orgId} ${r.result}${r.migrations.length ? ` (${r.migrations.join(', ')})` : ''}${r.error ? `: ${r.error}` : ''}`,
        ),
    });
    const s = summary(results);
    return { ...s, json: { shared, ...(s.json as object) } };
  },

  async status({ deps, argv }) {
    const { values, positionals } = parse(argv, { tenant: { type: 'string', multiple: true } });
    if (positionals.length) throw new UsageError('usage: status [--tenant ID ...]');
    const tenants = await deps.migrations.status({ ids: tenantIds(values.tenant), concurrency: 4 });
    return {
      json: { tenants },
      text: table(
        tenants.map((t) => ({ ...t, applied: t.applied.length, latest: t.applied.at(-1) ?? null })),
        ['orgId', 'dbName', 'applied', 'latest', 'pending', 'error'],
      ),
      exitCode: tenants.some((t) => t.error) ? 1 : 0,
      reason: `${tenants.filter((t) => t.error).length} tenant(s) could not be read`,
    };
  },

  async rollback({ deps, argv }) {
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
      await deps.migrations.rollback({
        ids: tenantIds(values.tenant),
        step: values.step === undefined ? 1 : positiveInt(values.step, '--step'),
        concurrency: values.concurrency === undefined ? 4 : positiveInt(values.concurrency, '--concurrency'),
      }),
    );
  },

  async provision({ deps, argv }) {
    const { id } = one(argv, 'provision <id>');
    const { org, apiKey } = await deps.orgs.provision(id);
    const r = orgResult(org);
    return {
      json: { org: adminView(org), apiKey: apiKey ?? null },
      text: apiKey ? `${r.text}\n\nAPI key (shown once): ${apiKey}` : r.text,
    };
  },

  async limits({ deps, argv }) {
    const { values, positionals } = parse(argv, { 'delivery-concurrency': { type: 'string' } });
    const usage = 'limits <id> [--delivery-concurrency N|default]';
    if (positionals.length !== 1) throw new UsageError(`usage: ${usage}`);
    const id = positiveInt(positionals[0], 'id');
    const wanted = values['delivery-concurrency'];
    let org = await deps.orgs.get(id);
    if (wanted !== undefined) {
      const deliveryConcurrency = wanted === 'default' ? null : positiveInt(wanted, '--delivery-concurrency');
      if (deliveryConcurrency !== null && deliveryConcurrency > 1000) throw new UsageError('--delivery-concurrency must be at most 1000');
      org = (await deps.orgs.patch(id, { deliveryConcurrency })).org;
    }
    const load = await deps.deliveryLoad.of(org);
    const { concurrency: c, deliveries: d, webhooks: w } = load;
    return {
      json: { delivery: load },
      text: [
        `org ${id}: deliveries at most ${c.limit || 'unlimited'} at once (${c.source === 'org' ? "the org's own" : 'ORG_DELIVERY_CONCURRENCY'})`,
        `  running ${d.inFlight}, parked ${d.parked}; messages queued ${d.queued}, sending ${d.sending}`,
        `  webhooks at most ${w.limit || 'unlimited'} at once: running ${w.inFlight}, parked ${w.parked}`,
      ].join('\n'),
    };
  },

  async top({ deps, argv }) {
    const { values, positionals } = parse(argv, { limit: { type: 'string' } });
    if (positionals.length) throw new UsageError('usage: top [--limit N]');
    const limit = values.limit === undefined ? 10 : positiveInt(values.limit, '--limit');
    const busiest = await deps.deliveryLoad.busiest(Math.min(limit, 100));
    // Each org's queued count comes from its own database: one query per org shown.
    const rows = await Promise.all(
      busiest.map(async ({ orgId }) => {
        const org = await deps.orgs.get(orgId);
        const load = await deps.deliveryLoad.of(org);
        return { orgId, name: org.name, limit: load.concurrency.limit, ...load.deliveries };
      }),
    );
    return {
      json: { orgs: rows },
      text: rows.length
        ? table(rows, ['orgId', 'name', 'limit', 'inFlight', 'parked', 'queued', 'sending'])
        : 'no org has deliveries running or parked',
    };
  },

  async suspend({ deps, argv }) {
    return orgResult((await deps.orgs.patch(one(argv, 'suspend <id>').id, { status: 'SUSPENDED' })).org);
  },

  async resume({ deps, argv }) {
    return orgResult((await deps.orgs.patch(one(argv, 'resume <id>').id, { status: 'ACTIVE' })).org);
  },

  async drop({ deps, argv }) {
    const { values, positionals } = parse(argv, { force: { type: 'boolean' } });
    if (positionals.length !== 1) throw new UsageError('usage: drop <id> --force');
    const id = positiveInt(positionals[0], 'id');
    if (!values.force) throw new UsageError(`refusing to drop org ${id} and its database without --force`);
    return orgResult(await deps.orgs.drop(id));
  },

  async credits({ deps, argv }) {
    const { values, positionals } = parse(argv, { reference: { type: 'string' } });
    if (positionals.length !== 2)
      throw new UsageError('usage: credits <id> <amount> [--reference REF]  (a negative amount is an adjustment)');
    const id = positiveInt(positionals[0], 'id');
    const amount = nonZeroInt(positionals[1], 'amount');
    const reference = `cli:${(values.reference as string | undefined) ?? `${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2)}`}`;
    const { org, entry, replayed } = await deps.orgs.credit(id, amount, reference);
    return {
      json: { org: adminView(org), entry, replayed },
      text: `org ${id}: ${entry.kind} ${amount > 0 ? '+' : ''}${amount} → balance ${org.creditBalance}${replayed ? ' (already applied)' : ''}`,
    };
  },

  async keys({ deps, argv }) {
    const [sub, ...rest] = argv;
    if (sub === 'create') {
      const { values, positionals } = parse(rest, { name: { type: 'string' } });
      if (positionals.length !== 1) throw new UsageError('usage: keys create <id> [--name NAME]');
      const { key, record } = await deps.orgs.createKey(
        positiveInt(positionals[0], 'id'),
        (values.name as string | undefined) ?? 'default',
      );
      return {
        json: { apiKey: key, prefix: record.prefix, name: record.name },
        text: `API key ${record.prefix} (${record.name}), shown once: ${key}`,
      };
    }
    if (sub === 'list') {
      const { id } = one(rest, 'keys list <id>');
      const keys = (await deps.orgs.listKeys(id)).map(({ keyHash: _hash, ...k }) => k);
      return { json: { keys }, text: table(keys, ['prefix', 'name', 'createdAt', 'lastUsedAt', 'revokedAt']) };
    }
    if (sub === 'revoke') {
      const { positionals } = parse(rest, {});
      if (positionals.length !== 2) throw new UsageError('usage: keys revoke <id> <prefix>');
      await deps.orgs.revokeKey(positiveInt(positionals[0], 'id'), positionals[1]!);
      return { json: { revoked: positionals[1] }, text: `revoked key ${positionals[1]}` };
    }
    throw new UsageError('usage: keys create|list|revoke …');
  },

  async servers({ deps, argv }) {
    const [sub, ...rest] = argv;
    if (sub === 'list') {
      const servers = await deps.servers.list();
      return {
        json: { servers },
        text: table(servers as unknown as Record<string, unknown>[], [
          'id',
          'name',
          'host',
          'port',
          'adminUser',
          'capacity',
          'status',
          'tenants',
        ]),
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
      if (positionals.length !== 1 || !/^[A-Za-z0-9_-]{1,64}$/.test(positionals[0]!) || !values.host || !values.user) {
        throw new UsageError('usage: servers add <name> --host H --port P --user U --password-env VAR [--capacity N]');
      }
      const passwordVar = values['password-env'] as string | undefined;
      const password = passwordVar ? readEnvSecret(passwordVar) : '';
      if (password === undefined) throw new UsageError(`environment variable ${passwordVar} is not set`);
      const server = await deps.servers.add({
        name: positionals[0]!,
        host: values.host as string,
        port: values.port ? positiveInt(values.port, '--port') : 3306,
        user: values.user as string,
        password,
        capacity: values.capacity ? positiveInt(values.capacity, '--capacity') : undefined,
      });
      return { json: { server }, text: `added db server ${server.name} (${server.host}:${server.port})` };
    }
    if (sub === 'drain' || sub === 'activate') {
      const { positionals } = parse(rest, {});
      if (positionals.length !== 1) throw new UsageError(`usage: servers ${sub} <name>`);
      const server = await deps.servers.setStatus(positionals[0]!, sub === 'drain' ? 'draining' : 'active');
      return {
        json: { server },
        text: `db server ${server.name} is ${server.status}${sub === 'drain' ? ': no new tenants go there; move its tenants with bin/tenant move' : ''}`,
      };
    }
    throw new UsageError('usage: servers add|list|drain|activate …');
  },

  async move({ deps, argv }) {
    const { values, positionals } = parse(argv, { to: { type: 'string' }, abort: { type: 'boolean' } });
    if (positionals.length !== 1 || Boolean(values.to) === Boolean(values.abort))
      throw new UsageError('usage: move <id> --to <server> | move <id> --abort');
    const id = positiveInt(positionals[0], 'id');
    if (values.abort) {
      await deps.mover.abort(id);
      return { json: { orgId: id, aborted: true }, text: `the move of org ${id} was aborted; it stays on its server` };
    }
    const r = await deps.mover.move(id, values.to as string);
    const copied = Object.entries(r.rows)
      .map(([t, n]) => `${t} ${n}`)
      .join(', ');
    return {
      json: r,
      text: `org ${id} moved from ${r.from} to ${r.to} (rows copied and verified: ${copied || 'none'})${r.oldCopyDropped ? '' : '; the old copy could not be dropped: see the log'}`,
    };
  },
};
