/**
 * Server errors are classified by their number (errno), for MariaDB and MySQL alike: mysql2 names only MySQL's codes,
 * so MariaDB's own (1969 max_statement_time exceeded, 1927 connection killed) arrive with no `code`. A timeout, a lock
 * wait or a deadlock is the infrastructure's (a delivery is postponed, an HTTP request answers 503 with Retry-After),
 * never the message's own error.
 */
import { expect } from 'chai';
import { toHttpError } from '../../../src/platform/http/errors.middleware.js';
import { isInfrastructureError } from '../../../src/platform/lib/infrastructure-errors.js';

/** A mysql2 server error as it arrives: errno and sqlState, a `code` only when mysql2 knows the number. */
const serverError = (errno: number, sqlState = 'HY000', code?: string) =>
  Object.assign(new Error(`server error ${errno}`), { errno, sqlState, code, sqlMessage: `server error ${errno}` });
/** The same error as Sequelize wraps it (SequelizeDatabaseError with `parent` and `original`). */
const wrapped = (inner: Error) =>
  Object.assign(new Error(inner.message), { name: 'SequelizeDatabaseError', parent: inner, original: inner });

/** [errno, the code mysql2 gives it (undefined: mysql2 has no name for it), what it is]. */
type Case = [number, string | undefined, string];
const BUSY: Case[] = [
  [1969, undefined, 'MariaDB max_statement_time exceeded'],
  [3024, 'ER_QUERY_TIMEOUT', 'MySQL max_execution_time exceeded'],
  [1205, 'ER_LOCK_WAIT_TIMEOUT', 'lock wait timeout'],
  [1213, 'ER_LOCK_DEADLOCK', 'deadlock'],
  [1317, 'ER_QUERY_INTERRUPTED', 'query interrupted (KILL QUERY)'],
  [3572, 'ER_LOCK_NOWAIT', 'NOWAIT lock not granted'],
  [1637, 'ER_TOO_MANY_CONCURRENT_TRXS', 'too many active concurrent transactions'],
];
const UNAVAILABLE: Case[] = [
  [1040, 'ER_CON_COUNT_ERROR', 'too many connections'],
  [1053, 'ER_SERVER_SHUTDOWN', 'server shutdown in progress'],
  [1203, 'ER_TOO_MANY_USER_CONNECTIONS', "the user's connection limit"],
  [1226, 'ER_USER_LIMIT_REACHED', "a user's resource limit"],
  [1927, undefined, 'MariaDB connection killed'],
  [4031, 'ER_CLIENT_INTERACTION_TIMEOUT', 'MySQL: disconnected for inactivity'],
  [1290, 'ER_OPTION_PREVENTS_STATEMENT', 'read-only server (--read-only, a failover in progress)'],
  [1836, 'ER_READ_ONLY_MODE', 'read-only mode'],
  [1041, 'ER_OUT_OF_RESOURCES', 'out of memory'],
  [1021, 'ER_DISK_FULL', 'disk full'],
  [1142, 'ER_TABLEACCESS_DENIED_ERROR', "a grant missing (the tenant's user may not UPDATE)"],
];
const OWN: Case[] = [
  [1062, 'ER_DUP_ENTRY', 'duplicate key'],
  [1054, 'ER_BAD_FIELD_ERROR', 'unknown column'],
  [1146, 'ER_NO_SUCH_TABLE', 'no such table'],
  [1406, 'ER_DATA_TOO_LONG', 'data too long'],
  [1064, 'ER_PARSE_ERROR', 'syntax error'],
];

describe('database errors by number (unit)', () => {
  for (const [errno, code, what] of [...BUSY, ...UNAVAILABLE]) {
    it(`${errno} (${what}) is the infrastructure's, raw and wrapped by Sequelize`, () => {
      expect(isInfrastructureError(serverError(errno, 'HY000', code))).to.equal(true);
      expect(isInfrastructureError(wrapped(serverError(errno, 'HY000', code)))).to.equal(true);
      expect(isInfrastructureError(new Error('delivery failed', { cause: serverError(errno, 'HY000', code) }))).to.equal(true);
    });
  }

  for (const [errno, code, what] of OWN) {
    it(`${errno} (${what}) is the work's own error, not the infrastructure's`, () => {
      expect(isInfrastructureError(serverError(errno, 'HY000', code))).to.equal(false);
      expect(isInfrastructureError(wrapped(serverError(errno, 'HY000', code)))).to.equal(false);
      expect(toHttpError(serverError(errno, 'HY000', code))).to.deep.include({ status: 500, code: 'INTERNAL_ERROR' });
    });
  }

  it('a statement timeout, lock wait or deadlock answers 503 DB_BUSY with Retry-After, never 500, and shows no SQL', () => {
    for (const [errno, code] of BUSY) {
      for (const err of [serverError(errno, '70100', code), wrapped(serverError(errno, '70100', code))]) {
        expect(toHttpError(err), String(errno)).to.deep.equal({
          status: 503,
          code: 'DB_BUSY',
          message: 'the database did not answer in time (statement timeout, lock wait or deadlock); try again',
          headers: { 'Retry-After': '1' },
        });
      }
    }
  });

  it('a server shutting down, out of connections or read-only answers 503 DB_UNAVAILABLE with Retry-After', () => {
    for (const [errno, code] of UNAVAILABLE) {
      expect(toHttpError(wrapped(serverError(errno, 'HY000', code))), String(errno)).to.deep.include({
        status: 503,
        code: 'DB_UNAVAILABLE',
        headers: { 'Retry-After': '1' },
      });
    }
  });

  it('a code mysql2 knows but with no number (a client-side error) is classified by its code as before', () => {
    expect(isInfrastructureError(Object.assign(new Error('lost'), { code: 'PROTOCOL_CONNECTION_LOST' }))).to.equal(true);
    expect(isInfrastructureError(Object.assign(new Error('bad'), { code: 'ER_PARSE_ERROR' }))).to.equal(false);
  });
});
