/** Names of tenant databases and users: generated from the org id, checked against a strict pattern before any DDL. */
import { assertIdentifier } from '../../platform/db/identifiers.js';

const USER = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

/** The database of org `id`, e.g. `tenant_42`. */
export function tenantDbName(prefix: string, id: number): string {
  return assertIdentifier(`${prefix}${positiveId(id)}`);
}

/** The MySQL user of org `id` (≤ 32 characters, as MySQL 8 requires). */
export function tenantDbUser(prefix: string, id: number): string {
  const user = `${prefix}${positiveId(id)}`;
  if (!USER.test(user)) throw new Error(`unsafe MySQL user name: ${JSON.stringify(user)}`);
  return user;
}

function positiveId(id: number): number {
  if (!Number.isSafeInteger(id) || id <= 0) throw new Error(`invalid org id: ${id}`);
  return id;
}
