/** Types shared by the Koa edge. */
import type { ParameterizedContext } from 'koa';
import type { RouterContext } from '@koa/router';
import type { Sequelize } from 'sequelize';
import type { ApiKeyRecord, OrgRecord } from '../tenancy/org.repository.js';

export interface AppState {
  requestId: string;
  org?: OrgRecord;
  apiKey?: ApiKeyRecord;
  tenantDb?: Sequelize;
  body?: unknown;
  query?: unknown;
  params?: unknown;
}

export type AppContext = ParameterizedContext<AppState> & Partial<RouterContext<AppState>>;
