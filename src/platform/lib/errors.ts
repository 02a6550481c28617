/** One error type for the whole app: a stable code, an HTTP status, and whether the message may be shown. */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly expose: boolean;
  readonly details?: unknown;
  readonly headers?: Record<string, string>;

  constructor(opts: {
    code: string;
    status: number;
    message: string;
    details?: unknown;
    cause?: unknown;
    headers?: Record<string, string>;
  }) {
    super(opts.message, { cause: opts.cause });
    this.name = 'AppError';
    this.code = opts.code;
    this.status = opts.status;
    this.expose = opts.status < 500 || opts.status === 501 || opts.status === 503;
    this.details = opts.details;
    this.headers = opts.headers;
  }
}

type Factory = (code: string, message: string, details?: unknown) => AppError;
const factory =
  (status: number): Factory =>
  (code, message, details) =>
    new AppError({ code, status, message, details });

/** 400 */ export const badRequest = factory(400);
/** 401 */ export const unauthorized = factory(401);
/** 402 */ export const paymentRequired = factory(402);
/** 403 */ export const forbidden = factory(403);
/** 404 */ export const notFound = factory(404);
/** 409 */ export const conflict = factory(409);
/** 422 */ export const unprocessable = factory(422);

/** 503 with a Retry-After header (seconds, at least 1). */
export function unavailable(code: string, message: string, retryAfterMs = 1000, cause?: unknown): AppError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new AppError({ code, status: 503, message, cause, headers: { 'Retry-After': String(seconds) } });
}

/** 503 SHUTTING_DOWN: the process (or the part of it asked) is closing; another process will take the request or job. */
export function shuttingDown(what = 'the server is shutting down'): AppError {
  return unavailable('SHUTTING_DOWN', what, 1000);
}

/** True when a MySQL error is a duplicate-key violation. */
export function isDuplicateKey(err: unknown): boolean {
  const e = err as { original?: { code?: string }; parent?: { code?: string }; code?: string; name?: string };
  return e?.name === 'SequelizeUniqueConstraintError' || [e?.original?.code, e?.parent?.code, e?.code].includes('ER_DUP_ENTRY');
}

/** A short, safe description of any thrown value, for logs and stored `last_error`. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { original?: { code?: string } }).original?.code ?? (err as { code?: string }).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
