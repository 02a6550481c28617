/** bin/tenant export: a tenant's org, messages and ledger as JSON Lines (src/messages/domain/tenant-export.ts). */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { orgIdRule } from '../../../orgs/index.js';
import { intArg, parse, UsageError } from '../../../platform/cli/args.js';
import type { Commands } from '../../../platform/cli/command.js';
import type { TenantExport } from '../../domain/tenant-export.js';

export function exportCommands(s: { tenantExport: TenantExport }): Commands {
  return {
    async export({ argv }) {
      const { values, positionals } = parse(argv, { to: { type: 'string' } });
      if (positionals.length !== 1) throw new UsageError('usage: export <id> [--to FILE]');
      const id = intArg(positionals[0], 'id', orgIdRule);
      const to = values.to as string | undefined;
      if (to === undefined) {
        // The JSON Lines are the command's output.
        await s.tenantExport.exportTo(id, process.stdout, { end: false });
        return { json: null, text: '', quiet: true };
      }
      if (!to.trim()) throw new UsageError('--to must name a file');
      const partial = `${to}.partial`;
      try {
        const r = await s.tenantExport.exportTo(id, createWriteStream(partial, { flags: 'wx' }));
        await rename(partial, to);
        return {
          json: { ...r, file: to },
          text: `org ${id}: exported ${r.counts.messages} messages and ${r.counts.ledger} ledger entries to ${to}`,
        };
      } catch (err) {
        await rm(partial, { force: true });
        throw err;
      }
    },
  };
}
