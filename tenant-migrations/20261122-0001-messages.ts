/** Tenant DB: the messages of one org. */
import { DataTypes, literal, type QueryInterface } from 'sequelize';

export async function up(qi: QueryInterface): Promise<void> {
  await qi.createTable(
    'messages',
    {
      id: { type: DataTypes.BIGINT.UNSIGNED, autoIncrement: true, primaryKey: true },
      to: { type: DataTypes.STRING(320), allowNull: false },
      channel: { type: DataTypes.STRING(8), allowNull: false },
      body: { type: DataTypes.TEXT('medium'), allowNull: false },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'QUEUED' },
      cost: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
      attempts: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, defaultValue: 0 },
      error_code: { type: DataTypes.STRING(64), allowNull: true },
      error_text: { type: DataTypes.STRING(1000), allowNull: true },
      provider_message_id: { type: DataTypes.STRING(255), allowNull: true },
      // Binary collation: `Order-1` and `order-1` are two different keys.
      idempotency_key: { type: DataTypes.STRING(255).BINARY, allowNull: true, unique: true },
      request_hash: { type: DataTypes.CHAR(64), allowNull: true },
      created_at: { type: DataTypes.DATE(3), allowNull: false, defaultValue: literal('CURRENT_TIMESTAMP(3)') },
      updated_at: { type: DataTypes.DATE(3), allowNull: false, defaultValue: literal('CURRENT_TIMESTAMP(3)') },
      sent_at: { type: DataTypes.DATE(3), allowNull: true },
    },
    { charset: 'utf8mb4', collate: 'utf8mb4_unicode_ci' },
  );
  // Newest first with a keyset cursor on id, optionally filtered by status.
  await qi.addIndex('messages', ['status', 'id'], { name: 'messages_status_id' });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.dropTable('messages');
}
