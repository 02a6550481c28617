/**
 * The warm pool of tenants: an org row made ahead of any signup (status POOLED once its database, MySQL user and
 * schema exist) carries `pooled_since` until a create claims it. The index serves the claim (pooled tenants of the
 * active servers, oldest first) and the refiller's count per server.
 */
import { DataTypes, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.addColumn('orgs', 'pooled_since', { type: DataTypes.DATE(3), allowNull: true });
  await qi.addIndex('orgs', ['status', 'db_server_id'], { name: 'orgs_status_server' });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.removeIndex('orgs', 'orgs_status_server');
  await qi.removeColumn('orgs', 'pooled_since');
}
