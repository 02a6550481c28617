/** Types shared by the Koa edge. */
import type { ParameterizedContext } from 'koa';
import type { RouterContext } from '@koa/router';
import type { ApiKeyRecord, ProvisionedOrg } from '../../orgs/domain/org.js';

export interface AppState {
  requestId: string;
  /** Set by requireTenant: the caller's org, active and provisioned. */
  org?: ProvisionedOrg;
  apiKey?: ApiKeyRecord;
}

export type AppContext = ParameterizedContext<AppState> & Partial<RouterContext<AppState>>;
