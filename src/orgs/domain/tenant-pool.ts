/**
 * The warm pool: tenants provisioned ahead of any signup (database, MySQL user, schema at the latest version), a few
 * per active server, so that creating an org only claims one and writes the org — a transaction on the shared DB, no
 * DDL. A pooled tenant is an org row like any other (status POOLED, `pooled_since` set, named by its uid), made before
 * anything on the server: whatever a crashed refill leaves has an owner, and the next refill finishes or discards it.
 * Fleet migrations migrate pooled tenants like any tenant; reads and lists never show them.
 */
import { Transaction } from 'sequelize';
import type { Config } from '../../../config/config.js';
import { LockTimeoutError, withLock } from '../../platform/db/migrator.js';
import { createSequelize } from '../../platform/db/sequelize.js';
import { conflict, describeError, isDuplicateKey } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import { generateApiKey } from '../../platform/lib/secrets.js';
import type { Ledger } from '../data-access/ledger.js';
import type { OrgRepository } from '../data-access/org.repository.js';
import { isProvisioned } from './org.js';
import type { Provisioner, ProvisionResult } from './provisioner.js';
import type { ServerRegistry } from './server-registry.js';

/** A pooled tenant untouched this long while PROVISIONING was left by a process that died: the refill takes it over. */
const STALLED_SEC = 120;

export interface PoolServerState {
  server: string;
  /** Ready to be claimed. */
  ready: number;
  /** Being provisioned now. */
  making: number;
  /** Failed while being provisioned (discarded by the next refill). */
  failed: number;
}

export function createTenantPool(deps: {
  config: Config;
  repo: OrgRepository;
  ledger: Ledger;
  servers: ServerRegistry;
  provisioner: Provisioner;
  logger: Logger;
  /** Seconds a pooled tenant may sit in PROVISIONING untouched before a refill takes it over (default 120). */
  stalledSec?: number;
}) {
  const { config, repo, ledger, servers, provisioner, logger } = deps;
  const stalledSec = deps.stalledSec ?? STALLED_SEC;
  const size = config.warmPool.size;
  let timer: NodeJS.Timeout | undefined;
  let refilling: Promise<number> | undefined;
  let again = false;
  let stopped = false;

  /**
   * Claims a ready tenant for a new org in one transaction (lock one with SKIP LOCKED, rename it ACTIVE, grant the
   * credits, make its first key). Undefined when none is ready there: the caller provisions inline.
   */
  async function claim(input: { name: string; credits: number; server?: string }): Promise<ProvisionResult | undefined> {
    if (size === 0) return undefined;
    const serverIds = await servers.activeIds(input.server);
    let claimed: { id: number; key: string } | undefined;
    try {
      // READ COMMITTED: the lock is on the one row claimed, with no gap lock for a refill's new POOLED rows to wait on.
      claimed = await repo.sequelize.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED }, async (transaction) => {
        const id = await repo.lockPooled(serverIds, transaction);
        if (id === undefined || !(await repo.claimPooled(id, input.name, transaction))) return undefined;
        if (input.credits > 0)
          await ledger.apply({ orgId: id, kind: 'grant', amount: input.credits, reference: 'initial-grant', transaction });
        const k = generateApiKey();
        await repo.insertKey({ orgId: id, prefix: k.prefix, keyHash: k.hash, name: 'default' }, transaction);
        return { id, key: k.key };
      });
    } catch (err) {
      if (isDuplicateKey(err)) throw conflict('ORG_NAME_TAKEN', `an org named ${JSON.stringify(input.name)} already exists`);
      throw err;
    }
    if (timer) void refill();
    if (!claimed) return undefined;
    return { org: (await repo.get(claimed.id))!, apiKey: claimed.key };
  }

  /** Removes a pooled tenant that will not be finished: its database and MySQL user (if its own), then its org row. */
  async function discard(id: number): Promise<void> {
    const org = await repo.get(id);
    if (!org?.pooledSince) return;
    if (isProvisioned(org)) await provisioner.removeDatabase(org, org.dbServerId);
    await repo.deletePooled(id);
  }

  /**
   * Whether a round has anything to do: a pooled tenant that failed or stalled, or an active server short of `size`.
   * Asked on the shared pool first, so that a full pool (the usual tick) costs no connection of its own and no lock.
   */
  async function hasWork(): Promise<boolean> {
    const counts = await repo.pooledCounts();
    if ([...counts.values()].some((c) => c.failed > 0)) return true;
    const have = (id: number) => (counts.get(id)?.ready ?? 0) + (counts.get(id)?.making ?? 0);
    if ((await servers.list()).some((x) => x.status === 'active' && have(x.id) < size)) return true;
    return (await repo.stalledPooled(stalledSec)).length > 0;
  }

  /** One refill round under a lock (one process at a time fills): drops failed ones, resumes stalled ones, tops up. */
  async function fillOnce(): Promise<number> {
    if (!(await hasWork())) return 0;
    const lockDb = createSequelize({ ...config.db, database: config.db.name, poolMax: 1, connectTimeoutMs: 3000 });
    try {
      return await withLock(lockDb, `tenancy:warm-pool:${config.db.name}`, 0, async () => {
        // Left by a refill that failed or died: finished if it can be, else discarded (database, user and row).
        for (const s of await repo.stalledPooled(stalledSec)) {
          if (stopped) return 0;
          try {
            if (s.status === 'PROVISIONING') {
              await provisioner.provision(s.id);
              continue;
            }
          } catch (err) {
            logger.warn('warm pool: a stalled pooled tenant could not be finished; discarding it', {
              orgId: s.id,
              err: describeError(err),
            });
          }
          await discard(s.id);
        }
        const counts = await repo.pooledCounts();
        let made = 0;
        for (const server of await servers.list()) {
          if (server.status !== 'active') continue;
          const c = counts.get(server.id);
          for (let have = (c?.ready ?? 0) + (c?.making ?? 0); have < size && !stopped; have++) {
            try {
              await provisioner.createPooled(server.name);
              made++;
            } catch (err) {
              // A full server takes no more; any other failure is left FAILED for the next round to drop.
              if ((err as { code?: string }).code !== 'NO_SERVER_CAPACITY')
                logger.warn('warm pool: provisioning a pooled tenant failed', { server: server.name, err: describeError(err) });
              break;
            }
          }
        }
        return made;
      });
    } catch (err) {
      if (err instanceof LockTimeoutError) return 0; // another process is filling
      throw err;
    } finally {
      await lockDb.close();
    }
  }

  /** Tops the pool up now (coalescing calls while a round runs); answers how many tenants this round made. */
  function refill(): Promise<number> {
    if (refilling) {
      again = true;
      return refilling;
    }
    refilling = (async () => {
      let made = 0;
      do {
        again = false;
        made += await fillOnce().catch((err: unknown) => {
          logger.warn('warm pool: refill failed', { err: describeError(err) });
          return 0;
        });
      } while (again && !stopped);
      return made;
    })().finally(() => (refilling = undefined));
    return refilling;
  }

  return {
    /** Pooled tenants wanted per active server (TENANT_WARM_POOL_SIZE; 0: no pool). */
    size,
    claim,
    refill,
    /** Ready, being made and failed pooled tenants per server. */
    async state(): Promise<PoolServerState[]> {
      const counts = await repo.pooledCounts();
      return (await servers.list()).map((s) => ({ server: s.name, ready: 0, making: 0, failed: 0, ...counts.get(s.id) }));
    },
    /** Refills in the background every TENANT_WARM_POOL_REFILL_MS (and after each claim) until stop(). */
    start(): void {
      if (size === 0 || timer) return;
      stopped = false;
      const tick = () => {
        void refill().finally(() => {
          if (!stopped) timer = setTimeout(tick, config.warmPool.refillMs).unref();
        });
      };
      timer = setTimeout(tick, 0).unref();
    },
    /** Stops refilling; waits for a round in progress to end its current tenant. */
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await refilling?.catch(() => undefined);
    },
  };
}

export type TenantPool = ReturnType<typeof createTenantPool>;
