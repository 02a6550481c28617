/** Fakes for the unit tier: a silent logger, org records, a manual clock, and promises settled from outside. */
import { createLogger } from '../../src/platform/lib/logger.js';
import type { ProvisionedOrg } from '../../src/orgs/domain/org.js';

export const silent = createLogger({ level: 'silent' });

/** A provisioned org record with the given id (and optionally other fields). */
export function fakeOrg(id: number, over: Partial<ProvisionedOrg> = {}): ProvisionedOrg {
  return {
    id,
    name: `org ${id}`,
    uid: `uid-${id}`,
    status: 'ACTIVE',
    creditBalance: 10,
    dbServerId: 1,
    dbName: `t_${id}`,
    dbUser: `t_${id}`,
    dbPasswordEnc: `enc-${id}`,
    provisioningStep: null,
    lastError: null,
    rateLimit: null,
    deliveryConcurrency: null,
    webhookUrl: null,
    webhookSecretEnc: null,
    movingSince: null,
    movingToServerId: null,
    pooledSince: null,
    droppedAt: null,
    purgedAt: null,
    createdAt: new Date(0),
    updatedAt: new Date(0),
    ...over,
  };
}

/** A promise with its resolve/reject exposed. */
export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A clock the test moves by hand. */
export function manualClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

/** Lets pending promise callbacks run. */
export const flush = () => new Promise<void>((r) => setImmediate(r));
