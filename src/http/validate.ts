/** Joi validation as route middleware that throws 400 VALIDATION_FAILED; validated values land in ctx.state. */
import type Joi from 'joi';
import type { Next } from 'koa';
import { badRequest } from '../lib/errors.js';
import type { AppContext } from './types.js';

type Part = 'body' | 'query' | 'params';

/** Validates the named parts of the request; unknown fields are refused. */
export function validate(schemas: Partial<Record<Part, Joi.Schema>>) {
  return async (ctx: AppContext, next: Next) => {
    const sources: Record<Part, unknown> = { body: (ctx.request as { body?: unknown }).body, query: ctx.query, params: ctx.params ?? {} };
    for (const part of Object.keys(schemas) as Part[]) {
      const { value, error } = schemas[part]!.validate(sources[part], { abortEarly: false, stripUnknown: false, convert: true });
      if (error) {
        throw badRequest('VALIDATION_FAILED', error.details.map((d) => d.message).join('; '), error.details.map((d) => ({
          in: part, path: d.path.join('.'), message: d.message, type: d.type,
        })));
      }
      ctx.state[part] = value;
    }
    return next();
  };
}
