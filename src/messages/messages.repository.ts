/** Reads of a tenant's messages (newest first, keyset cursor on id, served by the (status, id) index and the PK). */
import { Op, type Sequelize, type WhereOptions } from 'sequelize';
import { messageModel, type Message, type MessageStatus } from './message.model.js';

/** Lists messages newest first: `limit` rows with id < `before`, optionally of one status. */
export async function listMessages(db: Sequelize, opts: { limit: number; before?: number; status?: MessageStatus }): Promise<Message[]> {
  const where: WhereOptions = {};
  if (opts.before !== undefined) Object.assign(where, { id: { [Op.lt]: opts.before } });
  if (opts.status) Object.assign(where, { status: opts.status });
  return messageModel(db).findAll({ where, order: [['id', 'DESC']], limit: opts.limit });
}

/** One message by id, or null. */
export async function findMessage(db: Sequelize, id: number): Promise<Message | null> {
  return messageModel(db).findByPk(id);
}
