/** Shared (control-plane) DB: db servers, orgs, API keys, the credit ledger. */
import { DataTypes, literal, type QueryInterface } from 'sequelize';

const now = { type: DataTypes.DATE(3), allowNull: false, defaultValue: literal('CURRENT_TIMESTAMP(3)') };

export async function up(qi: QueryInterface): Promise<void> {
  await qi.createTable(
    'db_servers',
    {
      id: { type: DataTypes.INTEGER.UNSIGNED, autoIncrement: true, primaryKey: true },
      name: { type: DataTypes.STRING(64), allowNull: false, unique: true },
      host: { type: DataTypes.STRING(255), allowNull: false },
      port: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
      admin_user: { type: DataTypes.STRING(80), allowNull: false },
      admin_password_enc: { type: DataTypes.STRING(512), allowNull: false },
      capacity: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, defaultValue: 10000 },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'active' },
      created_at: now,
      updated_at: now,
    },
    { charset: 'utf8mb4', collate: 'utf8mb4_unicode_ci' },
  );

  await qi.createTable(
    'orgs',
    {
      id: { type: DataTypes.INTEGER.UNSIGNED, autoIncrement: true, primaryKey: true },
      name: { type: DataTypes.STRING(100), allowNull: false, unique: true },
      // Random, never reused: marks the org's tenant DB as its own (ids can repeat after a restore).
      uid: { type: DataTypes.CHAR(36), allowNull: false, unique: true },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'PROVISIONING' },
      credit_balance: { type: DataTypes.BIGINT, allowNull: false, defaultValue: 0 },
      db_server_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: true, references: { model: 'db_servers', key: 'id' } },
      db_name: { type: DataTypes.STRING(64), allowNull: true },
      db_user: { type: DataTypes.STRING(32), allowNull: true },
      db_password_enc: { type: DataTypes.STRING(512), allowNull: true },
      provisioning_step: { type: DataTypes.STRING(32), allowNull: true },
      last_error: { type: DataTypes.TEXT, allowNull: true },
      rate_limit_points: { type: DataTypes.INTEGER.UNSIGNED, allowNull: true },
      rate_limit_duration: { type: DataTypes.INTEGER.UNSIGNED, allowNull: true },
      webhook_url: { type: DataTypes.STRING(2048), allowNull: true },
      created_at: now,
      updated_at: now,
    },
    { charset: 'utf8mb4', collate: 'utf8mb4_unicode_ci' },
  );
  // Enforced by MariaDB ≥10.2 and MySQL ≥8.0.16: a balance can never go below zero, whatever the code does.
  await qi.sequelize.query('ALTER TABLE orgs ADD CONSTRAINT orgs_credit_balance_non_negative CHECK (credit_balance >= 0)');
  await qi.addIndex('orgs', ['status']);
  await qi.addIndex('orgs', ['db_server_id']);

  await qi.createTable(
    'api_keys',
    {
      id: { type: DataTypes.INTEGER.UNSIGNED, autoIncrement: true, primaryKey: true },
      org_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, references: { model: 'orgs', key: 'id' }, onDelete: 'CASCADE' },
      prefix: { type: DataTypes.STRING(12), allowNull: false, unique: true },
      key_hash: { type: DataTypes.CHAR(64), allowNull: false },
      name: { type: DataTypes.STRING(100), allowNull: false, defaultValue: 'default' },
      created_at: now,
      last_used_at: { type: DataTypes.DATE(3), allowNull: true },
      revoked_at: { type: DataTypes.DATE(3), allowNull: true },
    },
    { charset: 'utf8mb4', collate: 'utf8mb4_unicode_ci' },
  );
  await qi.addIndex('api_keys', ['org_id']);

  await qi.createTable(
    'credit_ledger',
    {
      id: { type: DataTypes.BIGINT.UNSIGNED, autoIncrement: true, primaryKey: true },
      org_id: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, references: { model: 'orgs', key: 'id' }, onDelete: 'CASCADE' },
      kind: { type: DataTypes.STRING(16), allowNull: false },
      amount: { type: DataTypes.BIGINT, allowNull: false },
      balance_after: { type: DataTypes.BIGINT, allowNull: false },
      message_id: { type: DataTypes.BIGINT.UNSIGNED, allowNull: true },
      // Binary collation: references (and the Idempotency-Keys inside them) compare exactly, case included.
      reference: { type: DataTypes.STRING(191).BINARY, allowNull: false },
      created_at: now,
    },
    { charset: 'utf8mb4', collate: 'utf8mb4_unicode_ci' },
  );
  // The same charge, refund or grant can never be applied twice.
  await qi.addIndex('credit_ledger', ['org_id', 'reference'], { unique: true, name: 'credit_ledger_org_reference' });
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.dropTable('credit_ledger');
  await qi.dropTable('api_keys');
  await qi.dropTable('orgs');
  await qi.dropTable('db_servers');
}
