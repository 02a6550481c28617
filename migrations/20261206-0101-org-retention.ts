/**
 * Orgs: offboarding with a retention period. A dropped org keeps its database and (locked) MySQL user until it is
 * purged: when it was dropped, the status it had (what `undrop` gives back), and when it was purged. And the copy a
 * restore switched away from (`retired_*`), recorded with the switch, until it is dropped after its grace period (by the
 * restore, or by the reconciler's sweep should the restore's process have died).
 */
import { DataTypes, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.addColumn('orgs', 'dropped_at', { type: DataTypes.DATE(3), allowNull: true });
  await qi.addColumn('orgs', 'status_before_drop', { type: DataTypes.STRING(16), allowNull: true });
  await qi.addColumn('orgs', 'purged_at', { type: DataTypes.DATE(3), allowNull: true });
  await qi.addColumn('orgs', 'retired_db_server_id', { type: DataTypes.INTEGER.UNSIGNED, allowNull: true });
  await qi.addColumn('orgs', 'retired_db_name', { type: DataTypes.STRING(64), allowNull: true });
  await qi.addColumn('orgs', 'retired_db_user', { type: DataTypes.STRING(32), allowNull: true });
  await qi.addColumn('orgs', 'retired_at', { type: DataTypes.DATE(3), allowNull: true });
  // The scheduled purge's scan: dropped, not purged, past the retention period.
  await qi.addIndex('orgs', ['status', 'purged_at', 'dropped_at'], { name: 'orgs_retention' });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.removeIndex('orgs', 'orgs_retention');
  for (const c of ['retired_at', 'retired_db_user', 'retired_db_name', 'retired_db_server_id']) await qi.removeColumn('orgs', c);
  await qi.removeColumn('orgs', 'purged_at');
  await qi.removeColumn('orgs', 'status_before_drop');
  await qi.removeColumn('orgs', 'dropped_at');
}
