/**
 * The OpenAPI 3.1 document of the HTTP API. Request schemas are converted from the very joi schemas that validate the
 * requests (src/platform/http/json-schema.ts), so the document cannot drift from the validation; response schemas come
 * from response-schemas.ts, typed by the views.
 */
import type Joi from 'joi';
import { parametersOf, toJsonSchema } from '../platform/http/json-schema.js';
import { createOrgSchema, creditSchema, idParams, listOrgsSchema, patchOrgSchema } from '../orgs/entry-points/http/orgs.routes.js';
import { ref, responseSchemas } from './response-schemas.js';
import type { JsonSchema } from '../platform/http/json-schema.js';
import { sendSchema } from '../messages/domain/channels/index.js';
import { listSchema } from '../messages/entry-points/http/messages.routes.js';

/** The version of the HTTP contract (compatible with the original messaging API, extended), not of the package. */
const API_VERSION = '1.0.0';

const headerRef = (name: string) => ({ $ref: `#/components/headers/${name}` });
const param = (name: string) => ({ $ref: `#/components/parameters/${name}` });
const jsonContent = (schema: JsonSchema) => ({ 'application/json': { schema } });
const body = (schema: Joi.Schema, example: unknown) => ({
  required: true,
  content: { 'application/json': { schema: toJsonSchema(schema), example } },
});

type Codes = Record<number, string[]>;
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad request',
  401: 'Not authenticated',
  402: 'Not enough credits',
  403: 'Forbidden',
  404: 'Not found',
  409: 'Conflict',
  413: 'Body too large',
  415: 'Body is not JSON',
  422: 'Idempotency-Key reused',
  429: 'Rate limited',
  500: 'Server error',
  503: 'Unavailable; retry after Retry-After seconds',
};

/** The error answers of an operation, each naming the codes it can carry, merged from several lists. */
function errors(...lists: Codes[]): Record<string, JsonSchema> {
  const merged: Codes = {};
  for (const list of lists) for (const [status, codes] of Object.entries(list)) (merged[Number(status)] ??= []).push(...codes);
  return Object.fromEntries(
    Object.entries(merged).map(([status, codes]) => {
      const headers: Record<string, JsonSchema> = { 'X-Request-Id': headerRef('XRequestId') };
      if (status === '429' || status === '503') headers['Retry-After'] = headerRef('RetryAfter');
      if (status === '401') headers['WWW-Authenticate'] = headerRef('WWWAuthenticate');
      const description = `${STATUS_TEXT[Number(status)]}: ${[...new Set(codes)].join(', ')}`;
      return [status, { description, headers, content: jsonContent(ref('Error')) }];
    }),
  );
}

/** A success answer. */
function ok(description: string, content: Record<string, unknown>, headers: string[] = []): JsonSchema {
  return {
    description,
    headers: Object.fromEntries([['X-Request-Id', headerRef('XRequestId')], ...headers.map((h) => [h, headerRef(h.replace(/-/g, ''))])]),
    content,
  };
}

const ADMIN: Codes = { 401: ['AUTH_REQUIRED', 'INVALID_ADMIN_TOKEN'], 429: ['RATE_LIMITED (failed authentications)'] };
const TENANT: Codes = {
  400: ['INVALID_ORG_ID'],
  401: ['AUTH_REQUIRED', 'INVALID_API_KEY'],
  403: ['ORG_MISMATCH', 'ORG_SUSPENDED'],
  404: ['ORG_NOT_FOUND'],
  409: ['ORG_NOT_READY'],
  429: ['RATE_LIMITED (per org, or failed authentications)'],
  503: ['TENANT_DB_UNAVAILABLE', 'TENANT_CAPACITY', 'DB_UNAVAILABLE', 'SHUTTING_DOWN'],
};
const JSON_BODY: Codes = { 400: ['VALIDATION_FAILED', 'INVALID_JSON'], 413: ['PAYLOAD_TOO_LARGE'], 415: ['UNSUPPORTED_MEDIA_TYPE'] };
const SHARED_DB: Codes = { 503: ['DB_UNAVAILABLE'] };
const RATE_HEADERS = ['RateLimit-Policy', 'RateLimit', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'];
const admin = { tags: ['admin'], security: [{ adminToken: [] }] };
const tenant = { tags: ['tenant'], security: [{ apiKey: [] }], parameters: [param('XOrgId')] };

/** Builds the document (a plain object; serve it as JSON). */
export function buildOpenApi(): JsonSchema {
  const orgId = parametersOf(idParams, 'path');
  const document = {
    openapi: '3.1.0',
    // Plain JSON Schema 2020-12 (the schemas use no OAS keyword): tools that skip bodies under the OAS base dialect (Prism 5) validate them.
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'Tenancy messaging API',
      version: API_VERSION,
      description:
        'A database-per-tenant messaging API. Tenants send `X-Org-Id` and `Authorization: Bearer <API key>`; admins send ' +
        '`Authorization: Bearer <ADMIN_TOKEN>`. Every answer carries `X-Request-Id`; every error is ' +
        '`{success:false, error:{code, message, details?}, requestId}`. A method a path does not serve answers 405 METHOD_NOT_ALLOWED, ' +
        'an unknown path 404 NOT_FOUND. Bodies are JSON with the types stated (`"10"` is not a number, an unpaired surrogate is ' +
        'not text: both 400); lengths count characters (code points). A query parameter an operation does not list is refused ' +
        '(400 VALIDATION_FAILED) on every tenant and admin operation, as an unknown body field is; the operations and reference ' +
        'routes (/health, /ready, /metrics, /openapi.json, /docs) ignore query parameters. The BullMQ dashboard at /admin/queues ' +
        '(HTTP Basic auth) is not described here.',
    },
    tags: [
      { name: 'admin', description: 'Org management (ADMIN_TOKEN)' },
      { name: 'tenant', description: 'A tenant’s own org and messages (X-Org-Id + API key)' },
      { name: 'operations', description: 'Health, readiness, metrics' },
      { name: 'reference', description: 'This document and its page' },
    ],
    paths: {
      '/orgs': {
        post: {
          ...admin,
          summary: 'Create an org',
          description: 'Provisions the tenant database (create, user and grants, migrate) before answering.',
          requestBody: body(createOrgSchema, { name: 'Acme', credits: 1000 }),
          responses: {
            '201': ok('Created, with its first API key', jsonContent(ref('OrgCreated'))),
            ...errors(
              JSON_BODY,
              ADMIN,
              { 404: ['SERVER_NOT_FOUND'], 409: ['ORG_NAME_TAKEN', 'NO_SERVER_CAPACITY', 'SERVER_DRAINING'], 500: ['PROVISIONING_FAILED'] },
              SHARED_DB,
            ),
          },
        },
        get: {
          ...admin,
          summary: 'List orgs',
          description: 'By id; the next page, if any, is in the `Link` header (`?after=`).',
          parameters: parametersOf(listOrgsSchema, 'query'),
          responses: {
            '200': ok('One page of orgs', jsonContent(ref('OrgList')), ['Link']),
            ...errors({ 400: ['VALIDATION_FAILED'] }, ADMIN, SHARED_DB),
          },
        },
      },
      '/orgs/{id}': {
        parameters: orgId,
        get: {
          ...admin,
          summary: 'Read an org',
          responses: {
            '200': ok('The org', jsonContent(ref('AdminOrgAnswer'))),
            ...errors({ 400: ['VALIDATION_FAILED'], 404: ['ORG_NOT_FOUND'] }, ADMIN, SHARED_DB),
          },
        },
        patch: {
          ...admin,
          summary: 'Suspend or resume an org, set its rate limit, delivery concurrency or webhook',
          requestBody: body(patchOrgSchema, { status: 'SUSPENDED', rateLimit: { points: 600, duration: 60 } }),
          responses: {
            '200': ok('The updated org', jsonContent(ref('AdminOrgAnswer'))),
            ...errors(JSON_BODY, { 400: ['WEBHOOK_URL_FORBIDDEN'], 404: ['ORG_NOT_FOUND'], 409: ['ORG_NOT_READY'] }, ADMIN, SHARED_DB),
          },
        },
      },
      '/orgs/{id}/delivery': {
        parameters: orgId,
        get: {
          ...admin,
          summary: 'The org’s deliveries now: its cap, jobs running and parked, messages queued',
          description:
            'Running and parked jobs are counted across every worker (Redis); queued and sending messages in the org’s own database. ' +
            'Set the cap with `PATCH /orgs/{id} {"deliveryConcurrency": n}` (null: back to ORG_DELIVERY_CONCURRENCY).',
          responses: {
            '200': ok('The load', jsonContent(ref('DeliveryLoadAnswer'))),
            ...errors({ 400: ['VALIDATION_FAILED'], 404: ['ORG_NOT_FOUND'] }, ADMIN, SHARED_DB, {
              503: ['TENANT_DB_UNAVAILABLE', 'TENANT_CAPACITY', 'TENANT_MOVING', 'QUEUE_UNAVAILABLE'],
            }),
          },
        },
      },
      '/orgs/{id}/credits': {
        parameters: orgId,
        post: {
          ...admin,
          summary: 'Grant (or take back) credits',
          description: 'A replay of the same `Idempotency-Key` answers the first entry again, with `Idempotency-Replay: true`.',
          parameters: [param('IdempotencyKey')],
          requestBody: body(creditSchema, { amount: 500 }),
          responses: {
            '200': ok('The org and the ledger entry', jsonContent(ref('CreditAnswer')), ['Idempotency-Replay']),
            ...errors(
              JSON_BODY,
              { 400: ['INVALID_IDEMPOTENCY_KEY'], 404: ['ORG_NOT_FOUND'], 409: ['INSUFFICIENT_BALANCE'], 422: ['IDEMPOTENCY_KEY_REUSED'] },
              ADMIN,
              SHARED_DB,
            ),
          },
        },
      },
      '/org': {
        get: {
          ...tenant,
          summary: 'The caller’s own org',
          responses: { '200': ok('Status and balance', jsonContent(ref('OwnOrg')), RATE_HEADERS), ...errors(TENANT) },
        },
      },
      '/messages': {
        post: {
          ...tenant,
          parameters: [...tenant.parameters, param('IdempotencyKey')],
          summary: 'Send a message',
          description:
            'Costs its credits from the org’s rate-limit window too. An email body is at most 100 KiB of UTF-8 (checked by the ' +
            'server; JSON Schema counts characters, not bytes). A replay of the same `Idempotency-Key` answers the first message as accepted.',
          requestBody: body(sendSchema, { channel: 'sms', to: '+15551234567', body: 'Your code is 123456' }),
          responses: {
            '202': ok('Accepted and queued', jsonContent(ref('MessageAnswer')), [...RATE_HEADERS, 'Idempotency-Replay']),
            ...errors(TENANT, JSON_BODY, {
              400: ['INVALID_IDEMPOTENCY_KEY'],
              402: ['INSUFFICIENT_CREDITS'],
              422: ['IDEMPOTENCY_KEY_REUSED'],
              503: ['QUEUE_UNAVAILABLE'],
            }),
          },
        },
        get: {
          ...tenant,
          parameters: [...tenant.parameters, ...parametersOf(listSchema, 'query')],
          summary: 'List messages, newest first',
          description: 'The next page, if any, is in the `Link` header (`?before=`).',
          responses: {
            '200': ok('One page of messages', jsonContent(ref('MessageList')), [...RATE_HEADERS, 'Link']),
            ...errors(TENANT, { 400: ['VALIDATION_FAILED'] }),
          },
        },
      },
      '/messages/{id}': {
        get: {
          ...tenant,
          parameters: [...tenant.parameters, param('MessageId')],
          summary: 'One message and its delivery status',
          responses: {
            '200': ok('The message', jsonContent(ref('MessageAnswer')), RATE_HEADERS),
            ...errors(TENANT, { 404: ['MESSAGE_NOT_FOUND'] }),
          },
        },
      },
      '/health': {
        get: { tags: ['operations'], summary: 'Liveness (no I/O)', responses: { '200': ok('Alive', jsonContent(ref('Health'))) } },
      },
      '/ready': {
        get: {
          tags: ['operations'],
          summary: 'Readiness: the shared DB and Redis answer',
          responses: {
            '200': ok('Ready', jsonContent(ref('Ready'))),
            '503': ok('Not ready', jsonContent(ref('Ready')), ['Retry-After']),
          },
        },
      },
      '/metrics': {
        get: {
          ...admin,
          tags: ['operations'],
          summary: 'Prometheus metrics (text exposition format)',
          responses: { '200': ok('The metrics', { 'text/plain': { schema: { type: 'string' } } }), ...errors(ADMIN) },
        },
      },
      '/openapi.json': {
        get: {
          tags: ['reference'],
          summary: 'This document',
          responses: {
            '200': ok(
              'OpenAPI 3.1',
              jsonContent({
                type: 'object',
                required: ['openapi', 'info', 'paths'],
                properties: { openapi: { const: '3.1.0' }, info: { type: 'object', additionalProperties: true } },
                additionalProperties: true,
                description: 'An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)',
              }),
            ),
          },
        },
      },
      '/docs': {
        get: {
          tags: ['reference'],
          summary: 'This document as a readable page',
          responses: {
            '200': ok('HTML; its script and styles are served by the API itself', { 'text/html': { schema: { type: 'string' } } }),
          },
        },
      },
    },
    components: {
      schemas: responseSchemas,
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN: admin routes and /metrics' },
        apiKey: { type: 'http', scheme: 'bearer', description: 'A tenant API key (`tk_…`), with the org’s id in X-Org-Id' },
        dashboardBasic: {
          type: 'http',
          scheme: 'basic',
          description: 'Only /admin/queues, the BullMQ dashboard: user admin, password ADMIN_TOKEN',
        },
      },
      parameters: {
        XOrgId: {
          name: 'X-Org-Id',
          in: 'header',
          required: true,
          description: 'The caller’s org; the API key must belong to it',
          schema: { type: 'string', pattern: '^[1-9][0-9]{0,9}$', description: 'at most 4294967295' },
        },
        IdempotencyKey: {
          name: 'Idempotency-Key',
          in: 'header',
          required: false,
          description: 'Makes a retry safe: the same key answers the first result again',
          schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' },
        },
        MessageId: { name: 'id', in: 'path', required: true, schema: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER } },
        XRequestId: {
          name: 'X-Request-Id',
          in: 'header',
          required: false,
          description: 'Echoed in the answer and its log lines when it matches the pattern; otherwise a new id is made',
          schema: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
        },
      },
      headers: {
        XRequestId: {
          required: true,
          description: 'The request id (the caller’s when it was safe); errors repeat it as requestId',
          schema: { type: 'string' },
        },
        RateLimitPolicy: {
          required: true,
          description: 'The org’s policy, current IETF draft: `"org";q=<points>;w=<window seconds>`',
          schema: { type: 'string', pattern: '^"org";q=\\d+;w=\\d+$' },
        },
        RateLimit: {
          required: true,
          description: 'The window’s state, current IETF draft: `"org";r=<remaining>;t=<seconds to reset>`',
          schema: { type: 'string', pattern: '^"org";r=\\d+;t=\\d+$' },
        },
        RateLimitLimit: { required: true, description: 'Points of the org’s window', schema: { type: 'integer', minimum: 1 } },
        RateLimitRemaining: { required: true, description: 'Points left in the window', schema: { type: 'integer', minimum: 0 } },
        RateLimitReset: { required: true, description: 'Seconds until the window resets', schema: { type: 'integer', minimum: 0 } },
        RetryAfter: { required: true, description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } },
        WWWAuthenticate: { description: 'The scheme to authenticate with (Bearer)', schema: { type: 'string' } },
        Link: { description: 'The next page: `<…>; rel="next"`, only when there may be one', schema: { type: 'string' } },
        IdempotencyReplay: { description: '`true` when the answer is a replay of an earlier request', schema: { const: 'true' } },
      },
    },
  };
  // Every operation takes an optional X-Request-Id (echoed when it is safe).
  for (const item of Object.values(document.paths) as Record<string, { parameters?: unknown[] }>[])
    for (const [method, operation] of Object.entries(item))
      if (method !== 'parameters') operation.parameters = [...(operation.parameters ?? []), param('XRequestId')];
  return document;
}
