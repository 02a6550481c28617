/**
 * Every error code the API and the CLI answer with, its HTTP status and what it means. test/error-catalogue.test.ts
 * scans the source for every code thrown and fails when one is missing here (or listed here but never thrown);
 * `npm run docs:errors` writes this table into docs/architecture.md, and the test checks the docs are current.
 */
export interface ErrorEntry {
  status: number;
  meaning: string;
}

export const ERROR_CATALOGUE: Readonly<Record<string, ErrorEntry>> = {
  BAD_REQUEST: {
    status: 400,
    meaning:
      'a malformed request refused before any route: by Koa, or by the HTTP parser (a doubled `Content-Length`, a broken request line), which then closes the connection',
  },
  INVALID_BODY: { status: 400, meaning: 'the body could not be read (aborted, wrong length)' },
  INVALID_JSON: { status: 400, meaning: 'the body is not valid JSON' },
  VALIDATION_FAILED: {
    status: 400,
    meaning: 'the body, query or path failed validation; `error.details` lists each problem (`in`, `path`, `message`, `type`)',
  },
  INVALID_ORG_ID: { status: 400, meaning: '`X-Org-Id` is missing or not a positive integer ≤ 4294967295' },
  INVALID_IDEMPOTENCY_KEY: { status: 400, meaning: '`Idempotency-Key` is not 1–255 printable ASCII characters' },
  WEBHOOK_URL_FORBIDDEN: {
    status: 400,
    meaning:
      'a webhook URL on a loopback, private, link-local, CGNAT, ULA, multicast, benchmarking, documentation or unspecified address, or an IPv6 one embedding such an IPv4 (NAT64, IPv4-translated, 6to4, Teredo) (unless `WEBHOOK_ALLOW_PRIVATE=true`)',
  },
  UNAUTHORIZED: { status: 401, meaning: 'unauthenticated (generic)' },
  REQUEST_TIMEOUT: { status: 408, meaning: 'the request was not received in time (answered by the HTTP parser, closing the connection)' },
  AUTH_REQUIRED: { status: 401, meaning: 'no `Authorization` header on a tenant route' },
  INVALID_API_KEY: { status: 401, meaning: 'the API key is malformed, unknown or revoked' },
  INVALID_ADMIN_TOKEN: { status: 401, meaning: 'an admin route without the right `ADMIN_TOKEN`' },
  DASHBOARD_AUTH_REQUIRED: { status: 401, meaning: '/admin/queues without Basic `admin:ADMIN_TOKEN`' },
  INSUFFICIENT_CREDITS: { status: 402, meaning: 'the balance is below the message’s cost (`details: {cost, balance}`); nothing stored' },
  FORBIDDEN: { status: 403, meaning: 'forbidden (generic)' },
  ORG_MISMATCH: { status: 403, meaning: 'the API key belongs to another org than `X-Org-Id`' },
  ORG_SUSPENDED: { status: 403, meaning: 'the org is suspended' },
  DASHBOARD_CROSS_SITE: { status: 403, meaning: 'a dashboard write from another site (`Sec-Fetch-Site`)' },
  NOT_FOUND: { status: 404, meaning: 'no such route' },
  ORG_NOT_FOUND: { status: 404, meaning: 'no such org (or it was dropped)' },
  MESSAGE_NOT_FOUND: { status: 404, meaning: 'no such message in the caller’s org' },
  KEY_NOT_FOUND: { status: 404, meaning: 'no such active API key of the org (CLI `keys revoke`)' },
  SERVER_NOT_FOUND: { status: 404, meaning: 'no such database server (`server` of POST /orgs, CLI)' },
  ROLLOUT_NOT_FOUND: { status: 404, meaning: 'no such schema rollout, or none made yet (CLI `rollout`)' },
  METHOD_NOT_ALLOWED: { status: 405, meaning: 'the path exists, not with this method; `Allow` lists the methods it takes' },
  CONFLICT: { status: 409, meaning: 'conflict (generic)' },
  ORG_NAME_TAKEN: { status: 409, meaning: 'an org of this name exists' },
  ORG_NOT_READY: { status: 409, meaning: 'the org is still provisioning, or failed to (see `bin/tenant show`)' },
  ORG_DELETED: { status: 409, meaning: 'the org was dropped (CLI `provision`)' },
  INSUFFICIENT_BALANCE: { status: 409, meaning: 'an adjustment would take the balance below zero' },
  PROVISIONING_IN_PROGRESS: { status: 409, meaning: 'another process is provisioning this org' },
  BACKUP_NOT_FOUND: { status: 404, meaning: 'no backup of that name in BACKUP_DIR (or at that path) (CLI `restore`)' },
  BACKUP_INVALID: {
    status: 422,
    meaning:
      'the file is not a tenant backup (not gzip, no header) or of a format version this code does not read; nothing changed (CLI `restore`)',
  },
  BACKUP_CORRUPT: {
    status: 422,
    meaning: 'the backup is damaged (gzip data, a line, the counts or the SHA-256 do not add up); nothing changed (CLI `restore`)',
  },
  BACKUP_TRUNCATED: {
    status: 422,
    meaning: 'the backup ends early (a partial copy or upload: no trailer, or the gzip stream cut); nothing changed (CLI `restore`)',
  },
  TENANT_DB_EXISTS: { status: 409, meaning: 'a database of the tenant’s name exists and is not this org’s; left untouched' },
  NO_SERVER_CAPACITY: {
    status: 409,
    meaning:
      'no active database server has room for another tenant (or the named one is full); the message names the fixes: `bin/tenant servers set <name> --capacity N`, `servers activate <name>`, `servers add …`',
  },
  SERVER_DRAINING: { status: 409, meaning: 'the named database server takes no new tenants' },
  SERVER_EXISTS: { status: 409, meaning: 'a database server of this name is registered (CLI `servers add`)' },
  SERVER_DUPLICATE: {
    status: 409,
    meaning: 'that address reaches a MySQL server already registered under another name (by its identity); CLI `servers add`, `move`',
  },
  SERVER_IDENTITY_CHANGED: {
    status: 409,
    meaning:
      'a registered server’s address now reaches another MySQL server than the one registered (CLI `move`, `servers set`); nothing changed',
  },
  SERVER_IDENTITY_UNKNOWN: {
    status: 409,
    meaning: 'a new address for a server with tenants cannot be confirmed: its registered address is unreachable (CLI `servers set`)',
  },
  ALREADY_THERE: { status: 409, meaning: 'the org is already on that database server (CLI `move`)' },
  MOVE_IN_PROGRESS: {
    status: 409,
    meaning: 'the org is being moved by another process, or an earlier move did not finish (CLI `move`; `move <id> --abort` ends it)',
  },
  MOVE_ABORTED: { status: 409, meaning: 'the move was stopped by `move <id> --abort` or `drop` and rolled back (CLI `move`)' },
  BACKUP_FOREIGN: {
    status: 409,
    meaning: 'the backup is of another org (CLI `restore`; nothing changed; `--force-foreign` restores it anyway)',
  },
  BACKUP_SCHEMA_UNKNOWN: {
    status: 409,
    meaning: 'the backup has tenant migrations this code does not know (written by newer code); nothing changed (CLI `restore`)',
  },
  ORG_NOT_DROPPED: { status: 409, meaning: 'undrop or purge of an org that is not dropped (CLI `undrop`, `purge`)' },
  ORG_PURGED: { status: 409, meaning: 'undrop of an org already purged: its database and keys are gone (CLI `undrop`)' },
  ORG_CHANGED: { status: 409, meaning: 'the org was dropped or moved during the restore; nothing was switched (CLI `restore`)' },
  NO_MOVE_IN_PROGRESS: { status: 409, meaning: 'the org is not being moved (CLI `move --abort`)' },
  ROLLOUT_RUNNING: { status: 409, meaning: 'another process is running a schema rollout (CLI `migrate`, `rollout resume|retry`)' },
  ROLLOUT_NOT_RUNNING: { status: 409, meaning: 'the rollout is not running, so it cannot be paused (CLI `rollout pause`)' },
  ROLLOUT_SUPERSEDED: { status: 409, meaning: 'a later `migrate` superseded this rollout: operate the later one (CLI `rollout`)' },
  PAYLOAD_TOO_LARGE: { status: 413, meaning: 'the body is over `BODY_LIMIT`' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, meaning: 'a body that is not `application/json`' },
  HEADERS_TOO_LARGE: {
    status: 431,
    meaning: 'the request headers are over Node’s limit (answered by the HTTP parser, closing the connection)',
  },
  IDEMPOTENCY_KEY_REUSED: { status: 422, meaning: 'this `Idempotency-Key` was used for a different request' },
  RATE_LIMITED: { status: 429, meaning: 'over the org’s rate limit, or too many failed authentications from this address; `Retry-After`' },
  INTERNAL_ERROR: { status: 500, meaning: 'a bug; the message never shows internals (the log has the request id)' },
  PROVISIONING_FAILED: {
    status: 500,
    meaning: 'provisioning stopped at a step (`details: {orgId, step}`); resume with `bin/tenant provision <id>`',
  },
  NOT_IMPLEMENTED: { status: 501, meaning: 'an HTTP method the API does not implement' },
  DB_UNAVAILABLE: {
    status: 503,
    meaning: 'a database is unreachable or cannot take work (shutting down, out of connections, read-only); `Retry-After`',
  },
  DB_BUSY: {
    status: 503,
    meaning: 'a database statement timed out (`TENANT_STATEMENT_TIMEOUT_MS`), waited too long for a lock or lost a deadlock; `Retry-After`',
  },
  TENANT_DB_UNAVAILABLE: {
    status: 503,
    meaning: 'this org’s database server is unreachable or not answering (other orgs are served); `Retry-After`',
  },
  TENANT_MOVING: {
    status: 503,
    meaning:
      'a write while this org’s database is being switched to another server (`bin/tenant move`; writes pause for about a second at most, reads go on); `Retry-After: 1`',
  },
  MOVE_UNCERTAIN: {
    status: 503,
    meaning:
      'the switch of a move could not be confirmed (the shared DB stopped answering); both copies are kept: run `move <id> --abort` (CLI)',
  },
  TENANT_CAPACITY: {
    status: 503,
    meaning:
      "every tenant instance or every connection of the tenant server's budget stayed busy past `TENANT_ACQUIRE_TIMEOUT_MS`; `Retry-After`",
  },
  QUEUE_UNAVAILABLE: {
    status: 503,
    meaning: 'Redis is unreachable: the message was not accepted (stored `FAILED ENQUEUE_FAILED`); `Retry-After`',
  },
  SHUTTING_DOWN: { status: 503, meaning: 'the process is shutting down; `Retry-After`' },
};

/** The catalogue as a Markdown table, by status then code (what docs/architecture.md shows). */
export function errorCatalogueMarkdown(): string {
  const rows = Object.entries(ERROR_CATALOGUE).sort(([a, x], [b, y]) => x.status - y.status || a.localeCompare(b));
  return ['| status | code | meaning |', '|---:|---|---|', ...rows.map(([code, e]) => `| ${e.status} | \`${code}\` | ${e.meaning} |`)].join(
    '\n',
  );
}
