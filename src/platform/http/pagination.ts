/** Keyset pagination: the page size rule and the `Link: <…>; rel="next"` header. */
import Joi from 'joi';
import type { AppContext } from './types.js';

/** `?limit=` of every list: 1–100, 20 by default. */
export const pageLimitRule = Joi.number().integer().min(1).max(100).default(20);

/** Sets `Link` to the same URL with `param` replaced by `cursor` when a next page may exist. */
export function setNextLink(ctx: AppContext, param: string, cursor: number | undefined): void {
  if (cursor === undefined) return;
  const url = new URL(ctx.originalUrl, 'http://placeholder');
  url.searchParams.set(param, String(cursor));
  ctx.set('Link', `<${url.pathname}${url.search}>; rel="next"`);
}
