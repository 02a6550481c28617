/** The tenant lifecycle commands of bin/tenant: backup, restore, clone (export, undrop and purge too). */
import { intArg, parse, stringArg, UsageError } from '../../../platform/cli/args.js';
import type { Commands } from '../../../platform/cli/command.js';
import { table } from '../../../platform/cli/output.js';
import { initialCreditsRule, orgIdRule, orgNameRule, serverNameRule } from '../../domain/org.rules.js';
import type { OrgService } from '../../domain/orgs.service.js';
import type { TenantBackups } from '../../domain/tenant-backups.js';
import { adminView, publicView } from '../http/views.js';
import { orgIdArgument } from './org.commands.js';

const ORG_COLUMNS = ['id', 'name', 'status', 'creditBalance', 'dbName', 'droppedAt', 'purgedAt'];

export interface LifecycleCommandsDeps {
  backups: TenantBackups;
  orgs: Pick<OrgService, 'undrop' | 'purge'>;
  /** DEFAULT_CREDITS: a clone's balance when `--credits` is not given. */
  defaultCredits: number;
}

export function lifecycleCommands(s: LifecycleCommandsDeps): Commands {
  return {
    async undrop({ argv }) {
      const org = await s.orgs.undrop(orgIdArgument(argv, 'undrop <id>').id);
      return { json: { org: adminView(org) }, text: table([adminView(org)], ORG_COLUMNS) };
    },

    async purge({ argv }) {
      const org = await s.orgs.purge(orgIdArgument(argv, 'purge <id>').id);
      return { json: { org: adminView(org) }, text: table([adminView(org)], ORG_COLUMNS) };
    },

    async backup({ argv }) {
      const { values, positionals } = parse(argv, { to: { type: 'string' }, list: { type: 'boolean' } });
      if (values.list) {
        if (positionals.length > 1) throw new UsageError('usage: backup --list [<id>]');
        const id = positionals[0] === undefined ? undefined : intArg(positionals[0], 'id', orgIdRule);
        const backups = (await s.backups.list(id)).map((b) => ({ ...b }));
        return { json: { dir: s.backups.store.describe(''), backups }, text: table(backups, ['name', 'bytes', 'modifiedAt']) };
      }
      if (positionals.length !== 1) throw new UsageError('usage: backup <id> [--to FILE] | backup --list [<id>]');
      const id = intArg(positionals[0], 'id', orgIdRule);
      const to = values.to === undefined ? undefined : String(values.to);
      if (to !== undefined && !to.trim()) throw new UsageError('--to must name a file');
      const r = await s.backups.backup(id, to);
      const rows = Object.entries(r.rows)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ');
      return {
        json: r,
        text: `org ${id}: backup written to ${r.file} (${r.bytes} bytes; ${rows}; schema ${r.schemaVersion}; sha256 ${r.sha256}) in ${r.ms} ms`,
      };
    },

    async restore({ argv }) {
      const { values, positionals } = parse(argv, {
        from: { type: 'string' },
        'to-server': { type: 'string' },
        'force-foreign': { type: 'boolean' },
      });
      if (positionals.length !== 1 || typeof values.from !== 'string' || !values.from.trim())
        throw new UsageError('usage: restore <id> --from FILE [--to-server NAME] [--force-foreign]');
      const id = intArg(positionals[0], 'id', orgIdRule);
      const toServer = values['to-server'] === undefined ? undefined : stringArg(values['to-server'], '--to-server', serverNameRule);
      const r = await s.backups.restore(id, values.from, { toServer, forceForeign: values['force-foreign'] === true });
      const rows = Object.entries(r.rows)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ');
      return {
        json: r,
        text: `org ${id}: restored from ${r.from} onto ${r.server} (database ${r.dbName}; ${rows}; schema ${r.schemaVersion.backup} → ${r.schemaVersion.now}) in ${r.ms} ms${r.oldCopyDropped ? '' : '; the old copy could not be dropped (see the log)'}`,
      };
    },

    async clone({ argv }) {
      const { values, positionals } = parse(argv, { name: { type: 'string' }, credits: { type: 'string' }, server: { type: 'string' } });
      if (positionals.length !== 1 || values.name === undefined)
        throw new UsageError('usage: clone <id> --name NAME [--credits N] [--server NAME]');
      const id = intArg(positionals[0], 'id', orgIdRule);
      const name = stringArg(values.name, '--name', orgNameRule);
      const credits = values.credits === undefined ? s.defaultCredits : intArg(values.credits, '--credits', initialCreditsRule);
      const server = values.server === undefined ? undefined : stringArg(values.server, '--server', serverNameRule);
      const r = await s.backups.clone(id, { name, credits, server });
      return {
        json: { org: publicView(r.org), apiKey: r.apiKey, sourceId: id, rows: r.rows },
        text: `${table([adminView(r.org)], ['id', 'name', 'status', 'creditBalance', 'dbName'])}\n\ncloned from org ${id} (${Object.entries(
          r.rows,
        )
          .map(([t, n]) => `${t} ${n}`)
          .join(', ')})\nAPI key (shown once, store it now): ${r.apiKey}`,
      };
    },
  };
}
