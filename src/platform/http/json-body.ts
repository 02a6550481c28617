/** Reads a JSON request body: 415 for other media types, 413 over the limit, 400 when it does not parse. */
import type { Next } from 'koa';
import getRawBody from 'raw-body';
import { AppError, badRequest } from '../lib/errors.js';
import type { AppContext } from './types.js';

/** Parses JSON bodies of POST/PUT/PATCH into ctx.request.body ({} when there is no body). */
export function jsonBody(limit: string) {
  const read = async (ctx: AppContext, next: Next) => {
    const type = mediaType(ctx);
    if (type === null) {
      (ctx.request as { body?: unknown }).body = {};
      await next();
      return;
    }
    if (type === false) {
      throw new AppError({ code: 'UNSUPPORTED_MEDIA_TYPE', status: 415, message: 'the body must be application/json' });
    }
    let raw: string;
    try {
      raw = await getRawBody(ctx.req, { limit, encoding: 'utf8', length: ctx.request.length });
    } catch (err) {
      const e = err as { status?: number; type?: string };
      if (e.status === 413) throw new AppError({ code: 'PAYLOAD_TOO_LARGE', status: 413, message: `the body is larger than ${limit}` });
      throw badRequest('INVALID_BODY', 'the body could not be read');
    }
    let body: unknown;
    try {
      body = raw.trim() === '' ? {} : JSON.parse(raw);
    } catch {
      throw badRequest('INVALID_JSON', 'the body is not valid JSON');
    }
    // JSON may escape half a surrogate pair (`"\ud800"`): not text, and MySQL would store it as U+FFFD.
    if (hasLoneSurrogate(body)) throw badRequest('INVALID_JSON', 'the body contains an unpaired surrogate (not valid Unicode)');
    (ctx.request as { body?: unknown }).body = body;
    await next();
  };
  // Requests without a body pass straight on (no promise of its own: this runs before every API request).
  return (ctx: AppContext, next: Next) => (BODY_METHODS.has(ctx.method) ? read(ctx, next) : next());
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
const LENGTH = /^[0-9]{1,15}$/;

/**
 * The JSON media type the body has, false for another one, null without a body (koa's `request.is`). The usual exact
 * `application/json` with a Content-Length is answered without parsing the header (type-is costs microseconds a request).
 */
function mediaType(ctx: AppContext): string | false | null {
  const { headers } = ctx.req;
  if (
    headers['content-type'] === 'application/json' &&
    headers['transfer-encoding'] === undefined &&
    LENGTH.test(headers['content-length'] ?? '')
  )
    return 'application/json';
  return ctx.request.is('application/json', 'application/*+json');
}

const LONE_SURROGATE = /\p{Surrogate}/u;

/** True when a string anywhere in a parsed JSON value holds half a surrogate pair. */
function hasLoneSurrogate(value: unknown): boolean {
  if (typeof value === 'string') return LONE_SURROGATE.test(value);
  if (Array.isArray(value)) return value.some(hasLoneSurrogate);
  if (value && typeof value === 'object') return Object.entries(value).some(([k, v]) => LONE_SURROGATE.test(k) || hasLoneSurrogate(v));
  return false;
}
