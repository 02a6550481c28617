/**
 * The statements on a tenant's `messages` table, but the delivery state machine's fenced writes (message-transitions.ts):
 * reads (newest first, keyset cursor on id, served by the (status, id) index and the PK), the insert, the send's own
 * corrections, operators' counts (the reconciler's cross-tenant reads are in reconciler-scan.ts). Plain rows, not model instances, through the lean path.
 */
import { insertRow, selectRows, utcDateTime, write, type LeanDb } from '../../platform/db/lean-query.js';
import type { MessageRecord, MessageStatus } from '../domain/message.js';

const COLUMNS =
  'id, `to`, channel, body, status, cost, attempts, error_code AS errorCode, error_text AS errorText, ' +
  'provider_message_id AS providerMessageId, idempotency_key AS idempotencyKey, request_hash AS requestHash, ' +
  'created_at AS createdAt, updated_at AS updatedAt, sent_at AS sentAt';

/** Lists messages newest first: `limit` rows with id < `before`, optionally of one status. */
export function listMessages(db: LeanDb, opts: { limit: number; before?: number; status?: MessageStatus }): Promise<MessageRecord[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (opts.before !== undefined) {
    where.push('id < ?');
    values.push(opts.before);
  }
  if (opts.status) {
    where.push('status = ?');
    values.push(opts.status);
  }
  values.push(opts.limit);
  const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  return selectRows<MessageRecord>(db, `SELECT ${COLUMNS} FROM messages${filter} ORDER BY id DESC LIMIT ?`, values);
}

/** One message by id, or null. */
export async function findMessage(db: LeanDb, id: number): Promise<MessageRecord | null> {
  const [row] = await selectRows<MessageRecord>(db, `SELECT ${COLUMNS} FROM messages WHERE id = ?`, [id]);
  return row ?? null;
}

/** Stores a new QUEUED message and answers it as stored (timestamps set here, as a model's create would). */
export async function insertMessage(
  db: LeanDb,
  m: Pick<MessageRecord, 'to' | 'channel' | 'body' | 'cost' | 'idempotencyKey' | 'requestHash'>,
): Promise<MessageRecord> {
  const now = new Date();
  const stamp = utcDateTime(now);
  const id = await insertRow(
    db,
    'INSERT INTO messages (`to`, channel, body, status, cost, attempts, idempotency_key, request_hash, created_at, updated_at) ' +
      "VALUES (?, ?, ?, 'QUEUED', ?, 0, ?, ?, ?, ?)",
    [m.to, m.channel, m.body, m.cost, m.idempotencyKey, m.requestHash, stamp, stamp],
  );
  return {
    id,
    ...m,
    status: 'QUEUED',
    attempts: 0,
    errorCode: null,
    errorText: null,
    providerMessageId: null,
    createdAt: now,
    updatedAt: now,
    sentAt: null,
  };
}

/** The message an Idempotency-Key made, or null (the key column is binary: compared exactly). */
export async function findMessageByKey(db: LeanDb, key: string): Promise<MessageRecord | null> {
  const [row] = await selectRows<MessageRecord>(db, `SELECT ${COLUMNS} FROM messages WHERE idempotency_key = ?`, [key]);
  return row ?? null;
}

/** Forgets an expired Idempotency-Key (takes it off its message), so the same key makes a new message. */
export async function forgetIdempotencyKey(db: LeanDb, id: number, key: string): Promise<void> {
  await write(db, 'UPDATE messages SET idempotency_key = NULL WHERE id = :id AND idempotency_key = :key', { id, key });
}

/**
 * A message whose job could not be enqueued: FAILED ENQUEUE_FAILED with its Idempotency-Key freed, so the same request
 * can be retried. Fenced on QUEUED with no attempt: false when a worker already has it (the add landed after all).
 */
export async function markNotAccepted(db: LeanDb, id: number): Promise<boolean> {
  const r = await write(
    db,
    `UPDATE messages SET status = 'FAILED', error_code = 'ENQUEUE_FAILED', error_text = 'the delivery queue was unavailable',
       idempotency_key = NULL, updated_at = CURRENT_TIMESTAMP(3) WHERE id = :id AND status = 'QUEUED' AND attempts = 0`,
    { id },
  );
  return r.affectedRows === 1;
}

/** Messages QUEUED and SENDING now (served by the (status, updated_at) index). */
export async function countOpen(db: LeanDb): Promise<{ queued: number; sending: number }> {
  const rows = await selectRows<{ status: string; n: number }>(
    db,
    "SELECT status, COUNT(*) AS n FROM messages WHERE status IN ('QUEUED', 'SENDING') GROUP BY status",
    [],
  );
  const count = (status: string) => Number(rows.find((r) => r.status === status)?.n ?? 0);
  return { queued: count('QUEUED'), sending: count('SENDING') };
}

/**
 * A clone's copy of its source's messages (on the clone's new database, before the switch): the messages the source had
 * not finished sending are the source's to send, never the clone's — marked FAILED, `CLONED_UNSENT`.
 */
export async function markClonedUnsent(db: LeanDb, sourceOrgId: number): Promise<number> {
  const r = await write(
    db,
    `UPDATE messages SET status = 'FAILED', error_code = 'CLONED_UNSENT', error_text = ?, updated_at = CURRENT_TIMESTAMP(3)
     WHERE status IN ('QUEUED', 'SENDING')`,
    [`not sent: copied from org ${sourceOrgId} before it was sent there`],
  );
  return r.affectedRows;
}

/** Messages with ids after `afterId`, oldest first (an export's pages, on the primary key). */
export function messagesAfter(db: LeanDb, afterId: number, limit: number): Promise<MessageRecord[]> {
  return selectRows<MessageRecord>(db, `SELECT ${COLUMNS} FROM messages WHERE id > ? ORDER BY id LIMIT ?`, [afterId, limit]);
}
