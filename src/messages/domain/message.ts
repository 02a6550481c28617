import type { Channel } from './channels/index.js';

/** A tenant's message as stored in its `messages` table (tenant-migrations/ define the table; reads return plain rows). */
export const MESSAGE_STATUSES = ['QUEUED', 'SENDING', 'SENT', 'FAILED'] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

/** One row of `messages`, with its columns in camelCase. */
export interface MessageRecord {
  id: number;
  to: string;
  channel: Channel;
  body: string;
  status: MessageStatus;
  cost: number;
  attempts: number;
  errorCode: string | null;
  errorText: string | null;
  providerMessageId: string | null;
  idempotencyKey: string | null;
  requestHash: string | null;
  createdAt: Date;
  updatedAt: Date;
  sentAt: Date | null;
}

/** A message as an export writes it: every column but the internal request hash. */
export function messageExportView(m: MessageRecord) {
  const { requestHash: _hash, ...rest } = m;
  return { ...rest, id: Number(m.id) };
}
