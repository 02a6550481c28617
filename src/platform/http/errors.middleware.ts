/** The one error middleware: request id, access log, and the JSON error shape for every error (ours and Koa's). */
import { randomUUID } from 'node:crypto';
import type { Next } from 'koa';
import { databaseErrorKind } from '../lib/database-errors.js';
import { AppError } from '../lib/errors.js';
import { isDatabaseUnavailable } from '../lib/infrastructure-errors.js';
import type { Logger } from '../lib/logger.js';
import type { Histogram } from 'prom-client';
import type { AppContext } from './types.js';

const CODES: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  501: 'NOT_IMPLEMENTED',
};
const SAFE_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Maps any thrown value to {status, code, message, details, headers}; internals never leak. */
export function toHttpError(err: unknown): {
  status: number;
  code: string;
  message: string;
  details?: unknown;
  headers?: Record<string, string>;
} {
  if (err instanceof AppError) {
    return err.expose
      ? { status: err.status, code: err.code, message: err.message, details: err.details, headers: err.headers }
      : { status: err.status, code: err.code, message: 'internal error', details: err.details };
  }
  const e = err as {
    status?: number;
    statusCode?: number;
    expose?: boolean;
    message?: string;
    name?: string;
    headers?: Record<string, string>;
  };
  const status = e?.status ?? e?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500 && e.expose !== false) {
    return { status, code: CODES[status] ?? 'BAD_REQUEST', message: e.message ?? 'bad request', headers: e.headers };
  }
  if (status === 501) return { status, code: CODES[501]!, message: 'this HTTP method is not supported' };
  if (isDatabaseUnavailable(err)) {
    return { status: 503, code: 'DB_UNAVAILABLE', message: 'a database is unavailable; try again', headers: { 'Retry-After': '1' } };
  }
  // Classified by server error number (MariaDB's statement timeout 1969 has no mysql2 code): not the request's fault.
  const kind = databaseErrorKind(err);
  if (kind === 'busy') {
    return {
      status: 503,
      code: 'DB_BUSY',
      message: 'the database did not answer in time (statement timeout, lock wait or deadlock); try again',
      headers: { 'Retry-After': '1' },
    };
  }
  if (kind === 'unavailable') {
    return { status: 503, code: 'DB_UNAVAILABLE', message: 'a database is unavailable; try again', headers: { 'Retry-After': '1' } };
  }
  return { status: 500, code: 'INTERNAL_ERROR', message: 'internal error' };
}

/**
 * First middleware: gives the request its id and log fields (`ctx.state.log`), catches everything, logs one access line
 * and one timing per request.
 */
export function errorsAndAccessLog(logger: Logger, httpDuration?: Histogram<'method' | 'route' | 'status'>) {
  return async (ctx: AppContext, next: Next) => {
    const incoming = ctx.get('X-Request-Id');
    const requestId = SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    const started = performance.now();
    const logContext: { requestId: string; orgId?: number } = { requestId };
    ctx.state.log = logContext;
    let failure: unknown;
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new AppError({ code: 'NOT_FOUND', status: 404, message: `no route for ${ctx.method} ${ctx.path}` });
      }
      // The router answered 405 or 501 itself, with `Allow` naming the methods the path has (RFC 9110 §15.5.6).
      if ((ctx.status === 405 || ctx.status === 501) && ctx.body === undefined) {
        const allow = ctx.response.get('Allow');
        throw new AppError({
          code: ctx.status === 405 ? 'METHOD_NOT_ALLOWED' : 'NOT_IMPLEMENTED',
          status: ctx.status,
          message:
            ctx.status === 405 ? `${ctx.method} is not allowed on ${ctx.path}; allowed: ${allow}` : 'this HTTP method is not supported',
          headers: { Allow: allow },
        });
      }
    } catch (err) {
      failure = err;
      const h = toHttpError(err);
      ctx.status = h.status;
      ctx.set(h.headers ?? {});
      ctx.body = {
        success: false,
        error: { code: h.code, message: h.message, ...(h.details === undefined ? {} : { details: h.details }) },
        requestId,
      };
    }
    const ms = performance.now() - started;
    const fields = {
      requestId,
      method: ctx.method,
      path: ctx.path,
      status: ctx.status,
      ms: Math.round(ms * 10) / 10,
      orgId: logContext.orgId,
    };
    // Label by route template, never by raw path: ids in paths would explode the series count.
    const route =
      (ctx as { _matchedRoute?: string })._matchedRoute ?? (ctx.path.startsWith('/admin/queues') ? '/admin/queues' : 'unmatched');
    httpDuration?.observe({ method: ctx.method, route, status: String(ctx.status) }, ms / 1000);
    if (ctx.status >= 500)
      logger.error('request failed', {
        ...fields,
        err: failure instanceof Error ? { name: failure.name, message: failure.message, stack: failure.stack } : failure,
      });
    // Checked first: winston formats a line (context, timestamp) before its transport drops it for its level.
    else if (logger.isLevelEnabled('info')) logger.info('request', fields);
  };
}
