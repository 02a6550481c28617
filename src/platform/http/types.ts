/** Types shared by the Koa edge. */
import type { ParameterizedContext } from 'koa';
import type { RouterContext } from '@koa/router';
import type { LogContext } from '../lib/context.js';

/**
 * The state of every request. Components add what their middleware sets by declaration merging (orgs: the caller's
 * org and API key, in src/orgs/entry-points/http/auth.ts), so this folder never imports them.
 */
export interface AppState {
  requestId: string;
  /**
   * What the request's access line carries: its id, and its org once authenticated (auth sets it). Passed explicitly,
   * not through an async context: AsyncLocalStorage's promise hooks (Node 20) cost 6–17 % of the API's CPU per POST /messages.
   */
  log?: LogContext;
}

export type AppContext = ParameterizedContext<AppState> & Partial<RouterContext<AppState>>;
