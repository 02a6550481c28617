/** Every command of bin/tenant, from the components' entry points, wired to the composition root's services. */
import { readEnvSecret } from '../../../config/config.js';
import type { Deps } from '../../deps.js';
import { deliveryCommands } from '../../messages/entry-points/cli/delivery.commands.js';
import { exportCommands } from '../../messages/entry-points/cli/export.commands.js';
import { createTenantExport } from '../../messages/domain/tenant-export.js';
import { fleetCommands } from '../../orgs/entry-points/cli/fleet.commands.js';
import { lifecycleCommands } from '../../orgs/entry-points/cli/lifecycle.commands.js';
import { orgCommands } from '../../orgs/entry-points/cli/org.commands.js';
import { rolloutCommands } from '../../orgs/entry-points/cli/rollout.commands.js';
import type { Commands } from '../../platform/cli/command.js';
import { migrateShared } from '../../platform/db/shared-db.js';

export function buildCommands(deps: Deps): Commands {
  const { config } = deps;
  return {
    ...orgCommands({ orgs: deps.orgs, defaultCredits: config.defaultCredits, port: config.port }),
    // backup, restore, clone, export, undrop, purge
    ...lifecycleCommands({ backups: deps.backups, orgs: deps.orgs, defaultCredits: config.defaultCredits }),
    ...fleetCommands({
      migrations: deps.migrations,
      servers: deps.servers,
      mover: deps.mover,
      pool: deps.pool,
      accounts: deps.provisioner,
      readEnvSecret,
    }),
    // migrate (a fleet rollout), rollout status|pause|resume|retry, status (fleet summary or --tenant), doctor
    ...rolloutCommands({
      fleet: deps.fleet,
      migrations: deps.migrations,
      migrateShared: () => migrateShared(deps.sharedDb, config.db.name, config.migrationLockWaitSec),
      sharedDbName: config.db.name,
    }),
    ...exportCommands({ tenantExport: createTenantExport({ repo: deps.repo, ledger: deps.ledger, servers: deps.servers }) }),
    ...deliveryCommands({ orgs: deps.orgs, deliveryLoad: deps.deliveryLoad }),
  };
}
