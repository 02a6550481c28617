/** Orgs: a move of the tenant's database to another server in progress (its requests answer 503 meanwhile). */
import { DataTypes, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.addColumn('orgs', 'moving_since', { type: DataTypes.DATE(3), allowNull: true });
  await qi.addColumn('orgs', 'moving_to_server_id', { type: DataTypes.INTEGER.UNSIGNED, allowNull: true });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.removeColumn('orgs', 'moving_to_server_id');
  await qi.removeColumn('orgs', 'moving_since');
}
