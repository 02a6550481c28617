/**
 * Shared DB: org changes that could not be published on Redis (src/orgs/domain/org-events.ts). Every process that
 * caches orgs reads the rows of the last ORG_CACHE_MAX_AGE_MS about once a second, and drops from its cache the orgs
 * of those it has not handled yet: a
 * change made by a process that cannot reach Redis (a CLI on the wrong side of a partition) still takes effect within
 * a second or so, not at the end of ORG_CACHE_MAX_AGE_MS. Rows are written only when a publish fails, and removed an
 * hour later.
 */
import { DataTypes, literal, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.createTable(
    'org_changes',
    {
      id: { type: DataTypes.BIGINT.UNSIGNED, autoIncrement: true, primaryKey: true },
      org_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
      reason: { type: DataTypes.STRING(32), allowNull: false },
      created_at: { type: DataTypes.DATE(3), allowNull: false, defaultValue: literal('CURRENT_TIMESTAMP(3)') },
    },
    { charset: 'utf8mb4', collate: 'utf8mb4_unicode_ci' },
  );
  await qi.addIndex('org_changes', ['created_at'], { name: 'org_changes_created_at' });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.dropTable('org_changes');
}
