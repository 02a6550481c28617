/** The JSON views of a message that the API answers with. */
import type { MessageRecord } from '../../domain/message.js';

/** The JSON shape of a message in API responses. */
export function messageView(m: MessageRecord) {
  return {
    id: Number(m.id),
    to: m.to,
    channel: m.channel,
    body: m.body,
    status: m.status,
    cost: m.cost,
    attempts: m.attempts,
    errorCode: m.errorCode ?? null,
    errorText: m.errorText ?? null,
    providerMessageId: m.providerMessageId ?? null,
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
    sentAt: m.sentAt ?? null,
  };
}

/**
 * The message as it was answered when accepted (202): what an Idempotency-Key replay answers again, whatever has
 * happened to it since (GET /messages/:id shows that).
 */
export function acceptedView(m: MessageRecord) {
  return {
    ...messageView(m),
    status: 'QUEUED' as const,
    attempts: 0,
    errorCode: null,
    errorText: null,
    providerMessageId: null,
    updatedAt: m.createdAt,
    sentAt: null,
  };
}
