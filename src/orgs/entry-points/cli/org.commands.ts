/** The org commands of bin/tenant: create, list, show, provision, suspend, resume, drop, credits, keys. */
import { intArg, parse, stringArg, UsageError } from '../../../platform/cli/args.js';
import type { CommandResult, Commands } from '../../../platform/cli/command.js';
import { table } from '../../../platform/cli/output.js';
import { ORG_STATUSES, type OrgStatus } from '../../domain/org.js';
import { creditAmountRule, initialCreditsRule, orgIdRule, orgNameRule, serverNameRule } from '../../domain/org.rules.js';
import type { OrgService } from '../../domain/orgs.service.js';
import { adminView, publicView } from '../http/views.js';

/** What the org commands use. */
export interface OrgCommandsDeps {
  orgs: OrgService;
  /** DEFAULT_CREDITS: a new org's balance when `--credits` is not given. */
  defaultCredits: number;
  /** PORT, for the curl line printed after `create`. */
  port: number;
}

const ORG_COLUMNS = ['id', 'name', 'status', 'creditBalance', 'dbName', 'provisioningStep', 'lastError'];

/** `<id>`, the only positional of a command. */
export function orgIdArgument(argv: string[], usage: string) {
  const { values, positionals } = parse(argv, {});
  if (positionals.length !== 1) throw new UsageError(`usage: ${usage}`);
  return { id: intArg(positionals[0], 'id', orgIdRule), values };
}
const one = orgIdArgument;
const orgResult = (org: Parameters<typeof adminView>[0]): CommandResult => ({
  json: { org: adminView(org) },
  text: table([adminView(org)], ORG_COLUMNS),
});

export function orgCommands(s: OrgCommandsDeps): Commands {
  return {
    async create({ argv }) {
      const { values, positionals } = parse(argv, { credits: { type: 'string' }, server: { type: 'string' } });
      if (positionals.length !== 1 || !positionals[0]!.trim()) throw new UsageError('usage: create <name> [--credits N] [--server NAME]');
      const credits = values.credits === undefined ? s.defaultCredits : intArg(values.credits, '--credits', initialCreditsRule);
      const name = stringArg(positionals[0], 'name', orgNameRule);
      const { org, apiKey } = await s.orgs.create({
        name,
        credits,
        server: values.server === undefined ? undefined : stringArg(values.server, '--server', serverNameRule),
      });
      return {
        json: { org: publicView(org), apiKey },
        text: `${table([adminView(org)], ORG_COLUMNS)}\n\nAPI key (shown once, store it now): ${apiKey}\nTry: curl -H "X-Org-Id: ${org.id}" -H "Authorization: Bearer ${apiKey}" http://127.0.0.1:${s.port}/org`,
      };
    },

    async list({ argv }) {
      const { values } = parse(argv, { status: { type: 'string' } });
      const status = values.status as OrgStatus | undefined;
      if (status && !(ORG_STATUSES as readonly string[]).includes(status))
        throw new UsageError(`--status must be one of ${ORG_STATUSES.join(', ')}`);
      const orgs = [];
      for (let after = 0; ;) {
        const page = await s.orgs.list({ limit: 500, after, statuses: status ? [status] : undefined });
        orgs.push(...page.map(adminView));
        if (page.length < 500) break;
        after = page[page.length - 1]!.id;
      }
      return { json: { orgs }, text: table(orgs, ORG_COLUMNS) };
    },

    async show({ argv }) {
      const { id } = one(argv, 'show <id>');
      const org = await s.orgs.get(id);
      const keys = await s.orgs.listKeys(id);
      const view = adminView(org);
      return {
        json: { org: view, keys: keys.map(({ keyHash: _hash, ...k }) => k) },
        text: `${Object.entries(view)
          .map(([k, v]) => `${k.padEnd(17)} ${v instanceof Date ? v.toISOString() : JSON.stringify(v)}`)
          .join('\n')}\nactive keys       ${keys.filter((k) => !k.revokedAt).length}`,
      };
    },

    async provision({ argv }) {
      const { id } = one(argv, 'provision <id>');
      const { org, apiKey } = await s.orgs.provision(id);
      const r = orgResult(org);
      return {
        json: { org: adminView(org), apiKey: apiKey ?? null },
        text: apiKey ? `${r.text}\n\nAPI key (shown once): ${apiKey}` : r.text,
      };
    },

    async suspend({ argv }) {
      return orgResult((await s.orgs.patch(one(argv, 'suspend <id>').id, { status: 'SUSPENDED' })).org);
    },

    async resume({ argv }) {
      return orgResult((await s.orgs.patch(one(argv, 'resume <id>').id, { status: 'ACTIVE' })).org);
    },

    async drop({ argv }) {
      const { values, positionals } = parse(argv, { force: { type: 'boolean' } });
      if (positionals.length !== 1) throw new UsageError('usage: drop <id> --force');
      const id = intArg(positionals[0], 'id', orgIdRule);
      if (!values.force) throw new UsageError(`refusing to drop org ${id} and its database without --force`);
      return orgResult(await s.orgs.drop(id));
    },

    async credits({ argv }) {
      const { values, positionals } = parse(argv, { reference: { type: 'string' } });
      if (positionals.length !== 2)
        throw new UsageError('usage: credits <id> <amount> [--reference REF]  (a negative amount is an adjustment)');
      const id = intArg(positionals[0], 'id', orgIdRule);
      const amount = intArg(positionals[1], 'amount', creditAmountRule);
      const reference = `cli:${(values.reference as string | undefined) ?? `${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2)}`}`;
      const { org, entry, replayed } = await s.orgs.credit(id, amount, reference);
      return {
        json: { org: adminView(org), entry, replayed },
        text: `org ${id}: ${entry.kind} ${amount > 0 ? '+' : ''}${amount} → balance ${org.creditBalance}${replayed ? ' (already applied)' : ''}`,
      };
    },

    async keys({ argv }) {
      const [sub, ...rest] = argv;
      if (sub === 'create') {
        const { values, positionals } = parse(rest, { name: { type: 'string' } });
        if (positionals.length !== 1) throw new UsageError('usage: keys create <id> [--name NAME]');
        const { key, record } = await s.orgs.createKey(
          intArg(positionals[0], 'id', orgIdRule),
          (values.name as string | undefined) ?? 'default',
        );
        return {
          json: { apiKey: key, prefix: record.prefix, name: record.name },
          text: `API key ${record.prefix} (${record.name}), shown once: ${key}`,
        };
      }
      if (sub === 'list') {
        const { id } = one(rest, 'keys list <id>');
        const keys = (await s.orgs.listKeys(id)).map(({ keyHash: _hash, ...k }) => k);
        return { json: { keys }, text: table(keys, ['prefix', 'name', 'createdAt', 'lastUsedAt', 'revokedAt']) };
      }
      if (sub === 'revoke') {
        const { positionals } = parse(rest, {});
        if (positionals.length !== 2) throw new UsageError('usage: keys revoke <id> <prefix>');
        await s.orgs.revokeKey(intArg(positionals[0], 'id', orgIdRule), positionals[1]!);
        return { json: { revoked: positionals[1] }, text: `revoked key ${positionals[1]}` };
      }
      throw new UsageError('usage: keys create|list|revoke …');
    },
  };
}
