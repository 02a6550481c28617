/**
 * Joi validation at the edge, typed: `validated({ body, query, params }, handler)` validates the named parts (400
 * VALIDATION_FAILED with joi's details, unknown fields refused) and calls the handler with the converted values,
 * typed by the schemas (`Joi.object<T>()`), so routes need no casts.
 */
import Joi from 'joi';
import { badRequest } from '../lib/errors.js';
import type { AppContext } from './types.js';

type Part = 'body' | 'query' | 'params';

export interface Schemas<B, Q, P> {
  body?: Joi.Schema<B>;
  query?: Joi.Schema<Q>;
  params?: Joi.Schema<P>;
}

export interface Input<B, Q, P> {
  body: B;
  query: Q;
  params: P;
}

/** A schema's fast path: the value it answers for the common valid input, or undefined to let the schema decide. */
export type Accept<T> = (value: unknown) => T | undefined;
const fastPaths = new WeakMap<Joi.Schema, Accept<unknown>>();

/**
 * `schema`, tried first through `accept` (which must answer only what the schema answers for that value, else
 * undefined): for a hot route whose schema costs more than its work. Errors always come from the schema.
 */
export function withFastPath<T>(schema: Joi.Schema<T>, accept: Accept<T>): Joi.Schema<T> {
  fastPaths.set(schema, accept);
  return schema;
}

/** Validates one value against a schema; throws 400 VALIDATION_FAILED naming where (`in`) each problem is. */
export function check<T>(schema: Joi.Schema<T>, value: unknown, part: Part): T {
  const fast = fastPaths.get(schema)?.(value);
  if (fast !== undefined) return fast as T;
  const result = schema.validate(value, { abortEarly: false, stripUnknown: false, convert: true });
  const { error } = result;
  if (error) {
    throw badRequest(
      'VALIDATION_FAILED',
      error.details.map((d) => d.message).join('; '),
      error.details.map((d) => ({
        in: part,
        path: d.path.join('.'),
        message: d.message,
        type: d.type,
      })),
    );
  }
  return result.value;
}

/** No query parameter at all: what a route that names no query schema takes (an unknown parameter is refused, as in bodies). */
const NO_QUERY = Joi.object({});

/** Query strings remembered per schema: a client repeats a handful of them (none, `?limit=50`…). */
const QUERY_MEMO_MAX = 256;
const queryMemos = new WeakMap<Joi.Schema, Map<string, unknown>>();

/**
 * A query's validation, remembered by its raw query string when it passed: validation is a pure function of that
 * string (a query schema refers to nothing else), so the same string gives the same value, frozen and shared by the
 * requests that send it. A failing query is validated every time (its error is the request's own).
 */
function checkQuery<T>(schema: Joi.Schema<T>, querystring: string, query: unknown): T {
  let memo = queryMemos.get(schema);
  if (!memo) queryMemos.set(schema, (memo = new Map<string, unknown>()));
  if (memo.has(querystring)) return memo.get(querystring) as T;
  const value = check(schema, query, 'query');
  if (memo.size >= QUERY_MEMO_MAX) memo.delete(memo.keys().next().value!);
  memo.set(querystring, Object.freeze(value));
  return value;
}

/**
 * A route handler that receives the validated parts of the request. A route that names no query schema takes no query
 * parameter: `?anything=` is 400 VALIDATION_FAILED, as an unknown body field is (one rule for every API route).
 */
export function validated<B = undefined, Q = undefined, P = undefined>(
  schemas: Schemas<B, Q, P>,
  handler: (ctx: AppContext, input: Input<B, Q, P>) => Promise<void> | void,
) {
  // Not async itself (a thrown validation error reaches Koa all the same): the handler's promise is the only one.
  return (ctx: AppContext): Promise<void> | void => {
    const sources: Record<Part, unknown> = { body: (ctx.request as { body?: unknown }).body, query: ctx.query, params: ctx.params ?? {} };
    const input: Record<Part, unknown> = { body: undefined, query: undefined, params: undefined };
    // In the order the route names them: the first part that fails is the one reported.
    for (const part of Object.keys(schemas) as Part[])
      input[part] =
        part === 'query'
          ? checkQuery(schemas.query!, ctx.querystring, sources.query)
          : check(schemas[part] as Joi.Schema<unknown>, sources[part], part);
    if (!schemas.query) checkQuery(NO_QUERY, ctx.querystring, sources.query);
    return handler(ctx, input as Input<B, Q, P>);
  };
}
