/**
 * JSON Schemas (2020-12) of what the API answers, next to the presenters that shape it: each view's schema is typed by
 * the presenter's return type, so a field added to a presenter and not described here fails typecheck.
 */
import type { LedgerEntry, LedgerKind } from '../orgs/data-access/ledger.js';
import type { DeliveryLoad } from '../messages/domain/delivery-load.js';
import { CHANNELS } from '../messages/domain/channels/index.js';
import { MESSAGE_STATUSES } from '../messages/domain/message.js';
import { ORG_STATUSES } from '../orgs/domain/org.js';
import type { adminView, publicView } from '../orgs/entry-points/http/views.js';
import type { messageView } from '../messages/entry-points/http/message.views.js';
import type { JsonSchema } from '../platform/http/json-schema.js';

type Properties<T> = { [K in keyof Required<T>]: JsonSchema };

/** A reference to a schema of this module, as the OpenAPI document names it. */
export const ref = (name: keyof typeof responseSchemas): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

/** A closed object whose required keys are all of `properties` but `optional`. */
function shape<T>(properties: Properties<T>, optional: (keyof T & string)[] = []): JsonSchema {
  return {
    type: 'object',
    properties,
    required: Object.keys(properties).filter((k) => !optional.includes(k as keyof T & string)),
    additionalProperties: false,
  };
}

const id: JsonSchema = { type: 'integer', minimum: 1 };
const dateTime: JsonSchema = { type: 'string', format: 'date-time' };
const orNull = (schema: JsonSchema): JsonSchema => ({ anyOf: [schema, { type: 'null' }] });
const success: JsonSchema = { const: true };
const LEDGER_KINDS = ['grant', 'debit', 'refund', 'adjustment'] as const satisfies readonly LedgerKind[];

const publicOrg: Properties<ReturnType<typeof publicView>> = {
  id,
  name: { type: 'string' },
  status: { enum: [...ORG_STATUSES] },
  creditBalance: { type: 'integer', minimum: 0 },
  createdAt: dateTime,
  updatedAt: dateTime,
};

const adminOrg: Properties<ReturnType<typeof adminView>> = {
  ...publicOrg,
  dbServerId: orNull(id),
  dbName: orNull({ type: 'string' }),
  provisioningStep: orNull({ type: 'string', description: 'the provisioning step in progress, or the one that failed' }),
  lastError: orNull({ type: 'string', description: 'why provisioning failed (secrets redacted)' }),
  rateLimit: orNull(shape<{ points: number; duration: number }>({ points: id, duration: { ...id, description: 'seconds' } })),
  deliveryConcurrency: orNull({
    type: 'integer',
    minimum: 1,
    description: 'deliveries of this org that may run at once across every worker (null: ORG_DELIVERY_CONCURRENCY)',
  }),
  webhookUrl: orNull({ type: 'string', format: 'uri' }),
  movingSince: orNull({ ...dateTime, description: 'set while its database is being moved to another server (`bin/tenant move`)' }),
  droppedAt: orNull({
    ...dateTime,
    description: 'when it was dropped: its database and locked user are kept until purged (`TENANT_RETENTION_DAYS`)',
  }),
  purgedAt: orNull({ ...dateTime, description: 'when its database, MySQL user and keys were removed for good' }),
};

const message: Properties<ReturnType<typeof messageView>> = {
  id,
  to: { type: 'string' },
  channel: { enum: [...CHANNELS] },
  body: { type: 'string' },
  status: { enum: [...MESSAGE_STATUSES] },
  cost: { type: 'integer', minimum: 0, description: 'credits charged when it is sent' },
  attempts: { type: 'integer', minimum: 0 },
  errorCode: orNull({ type: 'string' }),
  errorText: orNull({ type: 'string' }),
  providerMessageId: orNull({ type: 'string' }),
  createdAt: dateTime,
  updatedAt: dateTime,
  sentAt: orNull(dateTime),
};

const ledgerEntry: Properties<LedgerEntry> = {
  id,
  orgId: id,
  kind: { enum: [...LEDGER_KINDS] },
  amount: { type: 'integer' },
  balanceAfter: { type: 'integer', minimum: 0 },
  messageId: orNull(id),
  reference: { type: 'string' },
  createdAt: dateTime,
};

const count: JsonSchema = { type: 'integer', minimum: 0 };

const deliveryLoad: Properties<DeliveryLoad> = {
  orgId: id,
  concurrency: shape<DeliveryLoad['concurrency']>({
    limit: { ...count, description: 'deliveries of the org that may run at once across every worker (0: no cap)' },
    source: { enum: ['org', 'default'], description: 'the org’s own override, or ORG_DELIVERY_CONCURRENCY' },
  }),
  deliveries: shape<DeliveryLoad['deliveries']>({
    inFlight: { ...count, description: 'delivery jobs running now, across every worker' },
    parked: { ...count, description: 'delivery jobs held back by the cap until one of the org’s jobs finishes' },
    queued: { ...count, description: 'messages QUEUED in the org’s database' },
    sending: { ...count, description: 'messages SENDING in the org’s database' },
  }),
  webhooks: shape<DeliveryLoad['webhooks']>({
    inFlight: count,
    parked: count,
    limit: { ...count, description: 'ORG_WEBHOOK_CONCURRENCY (0: no cap)' },
  }),
};

/** Every response schema of the API, by the name the OpenAPI document gives it under components.schemas. */
export const responseSchemas = {
  Org: { ...shape(publicOrg), description: 'An org as its tenant sees it.' },
  AdminOrg: {
    ...shape(adminOrg),
    description: 'An org as the admin sees it: where it lives and how provisioning went; never a credential.',
  },
  Message: shape(message),
  LedgerEntry: shape(ledgerEntry),
  ValidationProblem: shape<{ in: string; path: string; message: string; type: string }>({
    in: { enum: ['body', 'query', 'params'] },
    path: { type: 'string', description: 'dotted path of the field ("" for the whole part)' },
    message: { type: 'string' },
    type: { type: 'string', description: "joi's error type, e.g. any.required" },
  }),
  InsufficientCreditsDetails: {
    ...shape<{ cost: number; balance: number }>({ cost: { type: 'integer', minimum: 1 }, balance: count }),
    description: 'The details of 402 INSUFFICIENT_CREDITS: what the message costs and the balance now.',
  },
  InsufficientBalanceDetails: {
    ...shape<{ balance: number }>({ balance: count }),
    description: 'The details of 409 INSUFFICIENT_BALANCE: the balance an adjustment would take below zero.',
  },
  ProvisioningFailedDetails: {
    ...shape<{ orgId: number; step: string }>({ orgId: id, step: { type: 'string', description: 'the provisioning step that failed' } }),
    description: 'The details of 500 PROVISIONING_FAILED: resume with bin/tenant provision <orgId>.',
  },
  Error: {
    description: 'Every error answer. Never a stack trace, an SQL text or another tenant’s data.',
    ...shape<{ success: false; error: unknown; requestId: string }>({
      success: { const: false },
      error: shape<{ code: string; message: string; details?: unknown }>(
        {
          code: { type: 'string', description: 'stable machine-readable code, e.g. VALIDATION_FAILED' },
          message: { type: 'string' },
          details: {
            description:
              'VALIDATION_FAILED: the problems; INSUFFICIENT_CREDITS: {cost, balance}; INSUFFICIENT_BALANCE: {balance}; PROVISIONING_FAILED: {orgId, step}',
            anyOf: [
              { type: 'array', items: { $ref: '#/components/schemas/ValidationProblem' } },
              { $ref: '#/components/schemas/InsufficientCreditsDetails' },
              { $ref: '#/components/schemas/InsufficientBalanceDetails' },
              { $ref: '#/components/schemas/ProvisioningFailedDetails' },
            ],
          },
        },
        ['details'],
      ),
      requestId: { type: 'string', description: 'the X-Request-Id of the request' },
    }),
  },
  OrgCreated: shape<{ success: true; org: unknown; apiKey: string }>({
    success,
    org: { $ref: '#/components/schemas/Org' },
    apiKey: { type: 'string', pattern: '^tk_', description: 'the first API key, shown once' },
  }),
  OrgList: shape<{ success: true; orgs: unknown }>({ success, orgs: { type: 'array', items: { $ref: '#/components/schemas/AdminOrg' } } }),
  AdminOrgAnswer: shape<{ success: true; org: unknown; webhookSecret?: string }>(
    {
      success,
      org: { $ref: '#/components/schemas/AdminOrg' },
      webhookSecret: { type: 'string', description: 'the new webhook signing secret, shown once, when one was issued' },
    },
    ['webhookSecret'],
  ),
  CreditAnswer: shape<{ success: true; org: unknown; entry: unknown }>({
    success,
    org: { $ref: '#/components/schemas/AdminOrg' },
    entry: { $ref: '#/components/schemas/LedgerEntry' },
  }),
  DeliveryLoadAnswer: shape<{ success: true; delivery: unknown }>({ success, delivery: shape(deliveryLoad) }),
  OwnOrg: shape<{ success: true; org: unknown }>({ success, org: { $ref: '#/components/schemas/Org' } }),
  MessageAnswer: shape<{ success: true; message: unknown }>({ success, message: { $ref: '#/components/schemas/Message' } }),
  MessageList: { type: 'array', items: { $ref: '#/components/schemas/Message' }, description: 'newest first' },
  Health: shape<{ status: 'ok' }>({ status: { const: 'ok' } }),
  Ready: shape<{ status: string; checks: unknown }>({
    status: { enum: ['ready', 'unavailable'] },
    checks: {
      type: 'object',
      description: 'each check (sharedDb, redis, …) and its state; reasons go to the log only',
      additionalProperties: { enum: ['ok', 'unavailable'] },
    },
  }),
} satisfies Record<string, JsonSchema>;
