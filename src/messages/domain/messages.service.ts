/**
 * The messages use cases, for a tenant: send (validate → cost → credit check → store QUEUED → enqueue ids only),
 * list and get. Each leases the tenant's database itself, so HTTP and workers call them the same way.
 */
import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import { isDuplicateKey, paymentRequired, unavailable, unprocessable } from '../../platform/lib/errors.js';
import type { Logger } from '../../platform/lib/logger.js';
import type { FairShare } from '../../platform/queue/fair-share.js';
import { ensureDeliveryJob, type DeliveryEnqueuer, type DeliveryJob } from '../../platform/queue/queues.js';
import { messageCost, type SendInput } from './channels/index.js';
import type { MessageRecord, MessageStatus } from './message.js';
import {
  findMessage,
  findMessageByKey,
  forgetIdempotencyKey,
  insertMessage,
  listMessages,
  markNotAccepted,
} from '../data-access/messages.repository.js';
import type { OrgRepository, ProvisionedOrg, TenantDbs } from '../../orgs/index.js';
import type { LeanDb } from '../../platform/db/lean-query.js';

export interface SendResult {
  message: MessageRecord;
  /** True when an Idempotency-Key matched an earlier request: nothing new was stored or enqueued. */
  replayed: boolean;
}

export interface ListQuery {
  limit: number;
  before?: number;
  status?: MessageStatus;
}

const requestHash = (input: SendInput) =>
  createHash('sha256')
    .update(JSON.stringify([input.channel, input.to, input.body]))
    .digest('hex');

export function createMessageService(deps: {
  repo: OrgRepository;
  tenantDbs: TenantDbs;
  /** Where replays repair a lost job. */
  queue: Queue<DeliveryJob>;
  /** How a new message's job is added (createDeliveryEnqueuer: the adds of one turn leave in one write). */
  enqueue: DeliveryEnqueuer;
  /** Priorities that keep one org's burst from holding back the others' messages. */
  fairShare: FairShare;
  logger: Logger;
  /** How long an Idempotency-Key is remembered (IDEMPOTENCY_KEY_TTL_SEC, 24 h by default, as Stripe and Novu do). */
  idempotencyTtlMs: number;
  now?: () => number;
}) {
  const { tenantDbs } = deps;
  const now = deps.now ?? Date.now;

  async function replay(org: ProvisionedOrg, db: LeanDb, key: string, hash: string): Promise<SendResult | undefined> {
    const existing = await findMessageByKey(db, key);
    if (!existing) return undefined;
    if (existing.createdAt.getTime() < now() - deps.idempotencyTtlMs) {
      // Expired: the key is forgotten (taken off its message) and this request is a new one.
      await forgetIdempotencyKey(db, existing.id, key);
      return undefined;
    }
    if (existing.requestHash !== hash)
      throw unprocessable('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different message');
    // A retry of a message still QUEUED repairs a lost job (a crash after the insert, Redis emptied) at once.
    if (existing.status === 'QUEUED') {
      await ensureDeliveryJob(deps.queue, org.id, Number(existing.id)).catch((err: Error) =>
        deps.logger.warn('replay could not ensure the delivery job; the reconciler will', { messageId: existing.id, err: err.message }),
      );
    }
    return { message: existing, replayed: true };
  }

  async function send(org: ProvisionedOrg, db: LeanDb, input: SendInput, idempotencyKey?: string): Promise<SendResult> {
    // The request's fingerprint matters only to tell a replay of an Idempotency-Key from a different request.
    const hash = idempotencyKey ? requestHash(input) : null;
    if (idempotencyKey) {
      const earlier = await replay(org, db, idempotencyKey, hash!);
      if (earlier) return earlier;
    }
    const cost = messageCost(input.channel, input.body);
    // The cached org's balance (at most ORG_CACHE_TTL_MS old; grants and adjustments invalidate it at once) can only be
    // higher than the real one through deliveries since: enough there lets the message in without a shared-DB round
    // trip, and the worker's debit is what really guards the balance. "Short" is checked fresh, so a 402 never comes
    // from stale data (a refund may have raised it meanwhile).
    if (org.creditBalance < cost) {
      const balance = await deps.repo.balance(org.id);
      if (balance < cost)
        throw paymentRequired('INSUFFICIENT_CREDITS', `this message costs ${cost} credit(s); the balance is ${balance}`, { cost, balance });
    }

    let message: MessageRecord;
    try {
      message = await insertMessage(db, { ...input, cost, idempotencyKey: idempotencyKey ?? null, requestHash: hash });
    } catch (err) {
      // Two requests with one Idempotency-Key raced: the first one's row is the answer.
      if (idempotencyKey && isDuplicateKey(err)) return (await replay(org, db, idempotencyKey, hash!))!;
      throw err;
    }
    try {
      await deps.enqueue({ orgId: org.id, messageId: Number(message.id) }, deps.fairShare.next(org.id));
    } catch (err) {
      // Not accepted (FAILED, its key freed) unless an add that timed out landed after all and a worker already has it.
      if (!(await markNotAccepted(db, message.id))) return { message: (await findMessage(db, message.id))!, replayed: false };
      deps.logger.error('enqueue failed', { orgId: org.id, messageId: message.id, err: (err as Error).message });
      throw unavailable('QUEUE_UNAVAILABLE', 'the message queue is unavailable; the message was not accepted', 1000, err);
    }
    return { message, replayed: false };
  }

  return {
    /** Stores and enqueues a message (or replays the one an Idempotency-Key already made). */
    send: (org: ProvisionedOrg, input: SendInput, idempotencyKey?: string) =>
      tenantDbs.withTenant(org, (db) => send(org, db, input, idempotencyKey)),
    /** The org's messages, newest first. */
    list: (org: ProvisionedOrg, query: ListQuery) => tenantDbs.withTenant(org, (db) => listMessages(db, query)),
    /** One of the org's messages, or null. */
    get: (org: ProvisionedOrg, id: number) => tenantDbs.withTenant(org, (db) => findMessage(db, id)),
  };
}

export type MessageService = ReturnType<typeof createMessageService>;
