/**
 * Safe moves: each db server's identity (what the MySQL server says it is, unique: one physical server is registered
 * once), and on an org the two facts a crashed move must leave behind: the server it is moving from (kept after the
 * switch until the old copy is dropped) and the random id written into the copy the move made (only that copy is ever
 * dropped by the move).
 */
import { DataTypes, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.addColumn('db_servers', 'server_uid', { type: DataTypes.STRING(80), allowNull: true });
  await qi.addIndex('db_servers', ['server_uid'], { name: 'db_servers_server_uid', unique: true });
  await qi.addColumn('orgs', 'moving_from_server_id', { type: DataTypes.INTEGER.UNSIGNED, allowNull: true });
  await qi.addColumn('orgs', 'moving_copy_uid', { type: DataTypes.CHAR(36), allowNull: true });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.removeColumn('orgs', 'moving_copy_uid');
  await qi.removeColumn('orgs', 'moving_from_server_id');
  await qi.removeIndex('db_servers', 'db_servers_server_uid');
  await qi.removeColumn('db_servers', 'server_uid');
}
