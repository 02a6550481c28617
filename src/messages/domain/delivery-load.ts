/**
 * What an org's deliveries are doing now, for operators (`GET /orgs/:id/delivery`, `bin/tenant top`, `bin/tenant
 * limits`): its cap and where it comes from, its jobs running and parked across every worker (Redis), and its
 * messages waiting and in progress (its own database, the record).
 */
import { countOpen } from '../data-access/messages.repository.js';
import { unavailable } from '../../platform/lib/errors.js';
import type { OrgPermits } from '../../platform/queue/org-permits.js';
import { type OrgRecord, isOperational, type TenantDbs } from '../../orgs/index.js';

export interface DeliveryLoad {
  orgId: number;
  /** Deliveries of the org that may run at once across every worker (0: no cap), and whether the org overrides it. */
  concurrency: { limit: number; source: 'org' | 'default' };
  deliveries: {
    /** Jobs running now, across every worker. */
    inFlight: number;
    /** Jobs held back by the cap, waiting for one of the org's slots. */
    parked: number;
    /** Messages QUEUED in the org's database (not yet picked up, or waiting for a retry). */
    queued: number;
    /** Messages SENDING in the org's database. */
    sending: number;
  };
  webhooks: { inFlight: number; parked: number; limit: number };
}

export interface DeliveryLoadDeps {
  tenantDbs: TenantDbs;
  orgPermits: { deliveries: OrgPermits; webhooks: OrgPermits };
  defaults: { deliveryConcurrency: number; webhookConcurrency: number };
}

export function createDeliveryLoad(deps: DeliveryLoadDeps) {
  async function pending(org: OrgRecord): Promise<{ queued: number; sending: number }> {
    if (!isOperational(org)) return { queued: 0, sending: 0 };
    return deps.tenantDbs.withTenant(org, countOpen);
  }

  return {
    /** The org's load now. */
    async of(org: OrgRecord): Promise<DeliveryLoad> {
      const slots = Promise.all([deps.orgPermits.deliveries.load(org.id), deps.orgPermits.webhooks.load(org.id)]).catch((err: Error) => {
        throw unavailable('QUEUE_UNAVAILABLE', 'the queue is unavailable; try again', 1000, err);
      });
      const [[running, hooks], messages] = await Promise.all([slots, pending(org)]);
      return {
        orgId: org.id,
        concurrency:
          org.deliveryConcurrency === null
            ? { limit: deps.defaults.deliveryConcurrency, source: 'default' }
            : { limit: org.deliveryConcurrency, source: 'org' },
        deliveries: { inFlight: running.inFlight, parked: running.parked, ...messages },
        webhooks: { inFlight: hooks.inFlight, parked: hooks.parked, limit: deps.defaults.webhookConcurrency },
      };
    },
    /** The orgs with the most deliveries running (then parked) now, at most `n`. */
    busiest(n: number) {
      return deps.orgPermits.deliveries.busiest(n);
    },
  };
}

export type DeliveryLoadReader = ReturnType<typeof createDeliveryLoad>;
