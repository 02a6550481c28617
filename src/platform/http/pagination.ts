/** Keyset pagination helpers: the `Link: <…>; rel="next"` header. */
import type { AppContext } from './types.js';

/** Sets `Link` to the same URL with `param` replaced by `cursor` when a next page may exist. */
export function setNextLink(ctx: AppContext, param: string, cursor: number | undefined): void {
  if (cursor === undefined) return;
  const url = new URL(ctx.originalUrl, 'http://placeholder');
  url.searchParams.set(param, String(cursor));
  ctx.set('Link', `<${url.pathname}${url.search}>; rel="next"`);
}
