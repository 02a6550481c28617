/**
 * The message state machine, as fenced writes on the tenant DB. Every status change is a conditional UPDATE on the
 * state its writer last saw; the caller acts on what follows (refund, webhook) only when the UPDATE changed the row.
 *
 *   QUEUED ──claim──▶ SENDING(n) ──sent(n)──▶ SENT          (final)
 *     ▲                  │  └────fail(n)────▶ FAILED        (final)
 *     └───requeue(n)─────┘
 *   QUEUED/SENDING(n) ──fail(seen n)──▶ FAILED   (no credit, org suspended, an error of the message's own)
 *   SENDING(n) ──claim──▶ SENDING(n+1)           (a stalled run is taken over; the late run's writes then miss)
 *   FAILED ──sent after failure──▶ SENT           (only with the provider's id on the row: a late acceptance)
 *
 * `attempts` is the fence: each claim increments it (LAST_INSERT_ID(attempts + 1) hands the new value back in the
 * same round trip), and every later write of that run names it. SENT is never left; FAILED only for SENT, and only
 * with the provider's id on the row (the provider accepted it: late-acceptance.ts).
 */
import { selectRows, write, writeSettingLastInsertId, type LeanDb } from '../../platform/db/lean-query.js';
import type { Channel } from '../domain/channels/index.js';
import type { MessageStatus } from '../domain/message.js';

/** What delivery reads of a message. */
export interface MessageState {
  id: number;
  status: MessageStatus;
  cost: number;
  attempts: number;
  to: string;
  channel: Channel;
  body: string;
  providerMessageId: string | null;
}

const OPEN = "('QUEUED', 'SENDING')";
const TEXT_MAX = 1000;

/** Reads the message (or undefined). */
export async function readMessage(db: LeanDb, id: number): Promise<MessageState | undefined> {
  const [r] = await selectRows<Record<string, unknown>>(
    db,
    'SELECT id, status, cost, attempts, `to`, channel, body, provider_message_id FROM messages WHERE id = ?',
    [id],
  );
  if (!r) return undefined;
  return {
    id: Number(r.id),
    status: r.status as MessageStatus,
    cost: Number(r.cost),
    attempts: Number(r.attempts),
    to: String(r.to),
    channel: r.channel as Channel,
    body: String(r.body),
    providerMessageId: (r.provider_message_id as string | null) ?? null,
  };
}

/** QUEUED or SENDING → SENDING with a new attempt number, which fences this run's later writes; undefined if final. */
export async function claim(db: LeanDb, id: number): Promise<number | undefined> {
  const r = await writeSettingLastInsertId(
    db,
    `UPDATE messages SET status = 'SENDING', attempts = LAST_INSERT_ID(attempts + 1), updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = :id AND status IN ${OPEN}`,
    { id },
  );
  return r.affectedRows === 1 ? Number(r.insertId) : undefined;
}

/** SENDING(attempt) → SENT; false when another run holds the message now (or it is final). */
export async function markSent(db: LeanDb, id: number, attempt: number, providerMessageId: string): Promise<boolean> {
  const r = await write(
    db,
    `UPDATE messages SET status = 'SENT', provider_message_id = :providerMessageId, sent_at = CURRENT_TIMESTAMP(3),
       error_code = NULL, error_text = NULL, updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = :id AND status = 'SENDING' AND attempts = :attempt`,
    { id, attempt, providerMessageId },
  );
  return r.affectedRows === 1;
}

/** SENDING(attempt) → QUEUED after a transient failure, to be retried; false when the run lost the fence. */
export async function requeue(db: LeanDb, id: number, attempt: number, code: string, text: string): Promise<boolean> {
  const r = await write(
    db,
    `UPDATE messages SET status = 'QUEUED', error_code = :code, error_text = :text, updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = :id AND status = 'SENDING' AND attempts = :attempt`,
    { id, attempt, code, text: text.slice(0, TEXT_MAX) },
  );
  return r.affectedRows === 1;
}

/**
 * → FAILED, from the state the caller saw: `{attempt}` for a run that claimed it (SENDING at that attempt), or
 * `{seen}` for a run that has not (still QUEUED or SENDING, with the attempts it read). False when anything moved, and
 * when the row carries a provider id: the provider accepted the message (an overlapping run's send), so it is not failed.
 */
export async function markFailed(
  db: LeanDb,
  id: number,
  fence: { attempt: number } | { seen: number; onlyQueued?: boolean },
  code: string,
  text: string,
): Promise<boolean> {
  const [statuses, attempts] = 'attempt' in fence ? ["('SENDING')", fence.attempt] : [fence.onlyQueued ? "('QUEUED')" : OPEN, fence.seen];
  const r = await write(
    db,
    `UPDATE messages SET status = 'FAILED', error_code = :code, error_text = :text, updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = :id AND status IN ${statuses} AND attempts = :attempts AND provider_message_id IS NULL`,
    { id, attempts, code, text: text.slice(0, TEXT_MAX) },
  );
  return r.affectedRows === 1;
}

/**
 * The provider accepted a send whose run had lost the fence: keep its id on the row if none is there. That id is the
 * evidence that the message was delivered: a row that carries it is never failed (markFailed), a later run marks it
 * SENT without sending again, and a FAILED one is turned SENT and charged (late-acceptance.ts, also by the
 * reconciler: updated_at moves, so its sweep of recent FAILED rows sees it).
 */
export async function recordLateAcceptance(db: LeanDb, id: number, providerMessageId: string): Promise<void> {
  await write(
    db,
    `UPDATE messages SET provider_message_id = :providerMessageId, updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = :id AND provider_message_id IS NULL`,
    { id, providerMessageId },
  );
}

/**
 * FAILED → SENT, for a message the provider accepted after it was failed (its id is on the row): the one way out of
 * FAILED. False when it is not FAILED (SENT already: a second settlement changes nothing).
 */
export async function markSentAfterFailure(db: LeanDb, id: number): Promise<boolean> {
  const r = await write(
    db,
    `UPDATE messages SET status = 'SENT', sent_at = CURRENT_TIMESTAMP(3), error_code = NULL, error_text = NULL,
       updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = :id AND status = 'FAILED' AND provider_message_id IS NOT NULL`,
    { id },
  );
  return r.affectedRows === 1;
}
