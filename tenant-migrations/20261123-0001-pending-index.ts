/** Tenant DB: an index for the outbox reconciler's sweep (QUEUED/SENDING rows older than a cut-off). */
import type { QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.addIndex('messages', ['status', 'updated_at'], { name: 'messages_status_updated_at' });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.removeIndex('messages', 'messages_status_updated_at');
}
