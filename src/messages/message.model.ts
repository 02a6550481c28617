/** The Message model of a tenant DB, defined once per tenant Sequelize instance (when its pool opens). */
import { DataTypes, Model, type InferAttributes, type InferCreationAttributes, type CreationOptional, type Sequelize } from 'sequelize';

export const MESSAGE_STATUSES = ['QUEUED', 'SENDING', 'SENT', 'FAILED'] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];
export const CHANNELS = ['sms', 'email'] as const;
export type Channel = (typeof CHANNELS)[number];

export class Message extends Model<InferAttributes<Message>, InferCreationAttributes<Message>> {
  declare id: CreationOptional<number>;
  declare to: string;
  declare channel: Channel;
  declare body: string;
  declare status: CreationOptional<MessageStatus>;
  declare cost: number;
  declare attempts: CreationOptional<number>;
  declare errorCode: CreationOptional<string | null>;
  declare errorText: CreationOptional<string | null>;
  declare providerMessageId: CreationOptional<string | null>;
  declare idempotencyKey: CreationOptional<string | null>;
  declare requestHash: CreationOptional<string | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
  declare sentAt: CreationOptional<Date | null>;
}

/** The model class bound to one tenant's Sequelize (each instance gets its own subclass, defined once). */
export function messageModel(sequelize: Sequelize): typeof Message {
  if (sequelize.isDefined('Message')) return sequelize.model('Message') as typeof Message;
  class TenantMessage extends Message {}
  TenantMessage.init(
    {
      id: { type: DataTypes.BIGINT.UNSIGNED, autoIncrement: true, primaryKey: true },
      to: { type: DataTypes.STRING(320), allowNull: false },
      channel: { type: DataTypes.STRING(8), allowNull: false },
      body: { type: DataTypes.TEXT('medium'), allowNull: false },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'QUEUED' },
      cost: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false },
      attempts: { type: DataTypes.INTEGER.UNSIGNED, allowNull: false, defaultValue: 0 },
      errorCode: { type: DataTypes.STRING(64), field: 'error_code' },
      errorText: { type: DataTypes.STRING(1000), field: 'error_text' },
      providerMessageId: { type: DataTypes.STRING(255), field: 'provider_message_id' },
      idempotencyKey: { type: DataTypes.STRING(255), field: 'idempotency_key' },
      requestHash: { type: DataTypes.CHAR(64), field: 'request_hash' },
      createdAt: { type: DataTypes.DATE(3), field: 'created_at' },
      updatedAt: { type: DataTypes.DATE(3), field: 'updated_at' },
      sentAt: { type: DataTypes.DATE(3), field: 'sent_at' },
    },
    { sequelize, modelName: 'Message', tableName: 'messages', timestamps: true, createdAt: 'createdAt', updatedAt: 'updatedAt' },
  );
  return TenantMessage;
}
