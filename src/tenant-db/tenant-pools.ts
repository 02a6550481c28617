/** The tenant pool cache wired to the real world: each pool connects as the org's own user to its server. */
import type { Config } from '../../config/config.js';
import { createSequelize } from '../db/sequelize.js';
import type { Logger } from '../lib/logger.js';
import type { SecretBox } from '../lib/secrets.js';
import { messageModel } from '../messages/message.model.js';
import { createTenantPoolCache, type TenantPoolCache } from './pool-cache.js';
import type { ServerRegistry } from './servers.js';

/** Creates the process's tenant pools (TENANT_CACHE_MAX pools of TENANT_POOL_MAX connections at most). */
export function createTenantPools(deps: { config: Config; servers: ServerRegistry; secrets: SecretBox; logger: Logger }): TenantPoolCache {
  const { servers, secrets, logger } = deps;
  const t = deps.config.tenant;
  return createTenantPoolCache({
    maxOpen: t.cacheMax,
    idleMs: t.idleMs,
    acquireTimeoutMs: t.acquireTimeoutMs,
    retryAfterMs: t.retryAfterMs,
    logger,
    async open(org) {
      const { host, port } = await servers.endpoint(org.dbServerId);
      const db = createSequelize({
        host,
        port,
        user: org.dbUser,
        password: secrets.decrypt(org.dbPasswordEnc),
        database: org.dbName,
        poolMax: t.poolMax,
        idleMs: t.idleMs,
        acquireTimeoutMs: t.acquireTimeoutMs,
        connectTimeoutMs: t.connectTimeoutMs,
        statementTimeoutMs: deps.config.tenantStatementTimeoutMs,
      });
      try {
        await db.authenticate();
      } catch (err) {
        await db.close().catch(() => undefined);
        throw err;
      }
      messageModel(db);
      return db;
    },
  });
}
