/** The delivery commands of bin/tenant: an org's delivery cap and load (limits), the busiest orgs (top). */
import { deliveryConcurrencyRule, orgIdRule, type OrgService } from '../../../orgs/index.js';
import { intArg, parse, positiveInt, UsageError } from '../../../platform/cli/args.js';
import type { Commands } from '../../../platform/cli/command.js';
import { table } from '../../../platform/cli/output.js';
import type { DeliveryLoadReader } from '../../domain/delivery-load.js';

/** What the delivery commands use. */
export interface DeliveryCommandsDeps {
  orgs: Pick<OrgService, 'get' | 'patch'>;
  deliveryLoad: DeliveryLoadReader;
}

export function deliveryCommands(s: DeliveryCommandsDeps): Commands {
  return {
    async limits({ argv }) {
      const { values, positionals } = parse(argv, { 'delivery-concurrency': { type: 'string' } });
      const usage = 'limits <id> [--delivery-concurrency N|default]';
      if (positionals.length !== 1) throw new UsageError(`usage: ${usage}`);
      const id = intArg(positionals[0], 'id', orgIdRule);
      const wanted = values['delivery-concurrency'];
      let org = await s.orgs.get(id);
      if (wanted !== undefined) {
        const deliveryConcurrency = wanted === 'default' ? null : intArg(wanted, '--delivery-concurrency', deliveryConcurrencyRule);
        org = (await s.orgs.patch(id, { deliveryConcurrency })).org;
      }
      const load = await s.deliveryLoad.of(org);
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

    async top({ argv }) {
      const { values, positionals } = parse(argv, { limit: { type: 'string' } });
      if (positionals.length) throw new UsageError('usage: top [--limit N]');
      const limit = values.limit === undefined ? 10 : positiveInt(values.limit, '--limit');
      const busiest = await s.deliveryLoad.busiest(Math.min(limit, 100));
      // Each org's queued count comes from its own database: one query per org shown.
      const rows = await Promise.all(
        busiest.map(async ({ orgId }) => {
          const org = await s.orgs.get(orgId);
          const load = await s.deliveryLoad.of(org);
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
  };
}
