/**
 * Shared DB: each tenant database's schema version (so fleet status needs no connection per tenant), and fleet
 * schema rollouts with their per-database state. The unit of work is a tenant database on a server (server id + name);
 * the org id is optional, so databases that belong to no org yet (a warm pool) can be recorded and rolled out too.
 */
import { DataTypes, literal, type QueryInterface } from 'sequelize';

const now = { type: DataTypes.DATE(3), allowNull: false, defaultValue: literal('CURRENT_TIMESTAMP(3)') };
const table = { charset: 'utf8mb4', collate: 'utf8mb4_unicode_ci' };

export async function up(qi: QueryInterface): Promise<void> {
  await qi.createTable(
    'tenant_schema_versions',
    {
      db_server_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, primaryKey: true },
      db_name: { type: DataTypes.STRING(64), allowNull: false, primaryKey: true },
      org_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: true },
      // The last migration applied (by name), as the tenant's own schema_migrations table says; null: none.
      version: { type: DataTypes.STRING(255), allowNull: true },
      // The last attempt's error (null when it succeeded), and whether it was a connection error.
      last_error: { type: DataTypes.TEXT, allowNull: true },
      unreachable: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      updated_at: now,
    },
    table,
  );
  await qi.addIndex('tenant_schema_versions', ['org_id'], { name: 'tenant_schema_versions_org' });

  await qi.createTable(
    'schema_rollouts',
    {
      id: { type: DataTypes.INTEGER.UNSIGNED, autoIncrement: true, primaryKey: true },
      // The latest tenant migration when the rollout was made: every database ends at it.
      target: { type: DataTypes.STRING(255), allowNull: false },
      state: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'running' }, // running · paused · halted · done
      // fleet: every tenant not at the target (and, at the end, any that appeared meanwhile); tenants: the ones named.
      scope: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'fleet' },
      max_failures: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, defaultValue: 0 },
      skip_failing: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      concurrency: { type: DataTypes.SMALLINT.UNSIGNED, allowNull: false },
      canary: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
      // Why it stopped (halted: the failures; superseded: by which rollout), for `rollout status`.
      note: { type: DataTypes.STRING(1000), allowNull: true },
      superseded_by: { type: DataTypes.INTEGER.UNSIGNED, allowNull: true },
      created_at: now,
      updated_at: now,
      finished_at: { type: DataTypes.DATE(3), allowNull: true },
    },
    table,
  );

  await qi.createTable(
    'schema_rollout_tenants',
    {
      id: { type: DataTypes.INTEGER.UNSIGNED, autoIncrement: true, primaryKey: true },
      rollout_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, references: { model: 'schema_rollouts', key: 'id' } },
      db_server_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
      db_name: { type: DataTypes.STRING(64), allowNull: false },
      org_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: true },
      wave: { type: DataTypes.SMALLINT.UNSIGNED, allowNull: false },
      state: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'pending' }, // pending · running · done · failed
      result: { type: DataTypes.STRING(16), allowNull: true }, // ok · failed · locked · skipped
      migrations: { type: DataTypes.STRING(4000), allowNull: true },
      error: { type: DataTypes.TEXT, allowNull: true },
      started_at: { type: DataTypes.DATE(3), allowNull: true },
      finished_at: { type: DataTypes.DATE(3), allowNull: true },
      ms: { type: DataTypes.INTEGER.UNSIGNED, allowNull: true },
    },
    table,
  );
  await qi.addIndex('schema_rollout_tenants', ['rollout_id', 'db_server_id', 'db_name'], {
    name: 'schema_rollout_tenants_db',
    unique: true,
  });
  await qi.addIndex('schema_rollout_tenants', ['rollout_id', 'state', 'wave'], { name: 'schema_rollout_tenants_state' });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.dropTable('schema_rollout_tenants');
  await qi.dropTable('schema_rollouts');
  await qi.dropTable('tenant_schema_versions');
}
