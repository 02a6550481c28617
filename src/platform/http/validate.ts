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

/** Validates one value against a schema; throws 400 VALIDATION_FAILED naming where (`in`) each problem is. */
export function check<T>(schema: Joi.Schema<T>, value: unknown, part: Part): T {
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

/**
 * A route handler that receives the validated parts of the request. A route that names no query schema takes no query
 * parameter: `?anything=` is 400 VALIDATION_FAILED, as an unknown body field is (one rule for every API route).
 */
export function validated<B = undefined, Q = undefined, P = undefined>(
  schemas: Schemas<B, Q, P>,
  handler: (ctx: AppContext, input: Input<B, Q, P>) => Promise<void> | void,
) {
  return async (ctx: AppContext) => {
    const sources: Record<Part, unknown> = { body: (ctx.request as { body?: unknown }).body, query: ctx.query, params: ctx.params ?? {} };
    const input: Record<Part, unknown> = { body: undefined, query: undefined, params: undefined };
    // In the order the route names them: the first part that fails is the one reported.
    for (const part of Object.keys(schemas) as Part[]) input[part] = check(schemas[part] as Joi.Schema<unknown>, sources[part], part);
    if (!schemas.query) check(NO_QUERY, sources.query, 'query');
    await handler(ctx, input as Input<B, Q, P>);
  };
}
