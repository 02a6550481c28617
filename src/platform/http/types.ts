/** Types shared by the Koa edge. */
import type { ParameterizedContext } from 'koa';
import type { RouterContext } from '@koa/router';

/**
 * The state of every request. Components add what their middleware sets by declaration merging (orgs: the caller's
 * org and API key, in src/orgs/entry-points/http/auth.ts), so this folder never imports them.
 */
export interface AppState {
  requestId: string;
}

export type AppContext = ParameterizedContext<AppState> & Partial<RouterContext<AppState>>;
