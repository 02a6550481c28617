/** Orgs: a per-org override of how many of its deliveries may run at once across every worker (null: the default). */
import { DataTypes, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.addColumn('orgs', 'delivery_concurrency', { type: DataTypes.SMALLINT.UNSIGNED, allowNull: true });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.removeColumn('orgs', 'delivery_concurrency');
}
