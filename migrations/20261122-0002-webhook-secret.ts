/** Orgs: the per-org secret that signs status webhooks (encrypted at rest, like every credential). */
import { DataTypes, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.addColumn('orgs', 'webhook_secret_enc', { type: DataTypes.STRING(512), allowNull: true });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.removeColumn('orgs', 'webhook_secret_enc');
}
