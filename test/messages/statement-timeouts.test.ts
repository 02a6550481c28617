/**
 * A statement timeout or lock wait is the infrastructure's, never the message's own error (issue 18, item 6), on the
 * real MariaDB: a row lock held from an admin connection past TENANT_STATEMENT_TIMEOUT_MS makes the worker's claim or
 * its SENT write fail with MariaDB's 1969 (max_statement_time exceeded, which mysql2 has no name for). The delivery is
 * postponed — not FAILED DELIVERY_ERROR and refunded, least of all for a message the provider had accepted — and ends
 * SENT, charged once, when the lock is gone. An API request meeting the same timeout answers 503 DB_BUSY, Retry-After.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Job } from 'bullmq';
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import type { Sequelize } from 'sequelize';
import { debitReference } from '../../src/messages/domain/deliver-message.js';
import { deliveryJobId, type DeliveryJob } from '../../src/platform/queue/queues.js';
import { startWorkers, type Workers } from '../../src/messages/entry-points/queue/workers.js';
import { createTenant, eventually, rootDb, rows, startApi, testConfig, type TestApi } from '../helpers.js';

const TIMEOUT_MS = 400;

/** An idempotent provider: the same key answers the same id; the first request can be held until the test lets it go. */
async function startProvider() {
  const received: string[] = [];
  let hold: Promise<void> | undefined;
  let held: (() => void) | undefined;
  const server = http.createServer((req, res) => {
    const key = String(req.headers['idempotency-key']);
    received.push(key);
    req.resume();
    const answer = () => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ id: `p-${key}` }));
    if (hold) {
      const gate = hold;
      hold = undefined;
      held?.();
      void gate.then(answer);
    } else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/send`,
    received,
    /** Holds the next request until `release` resolves; resolves once that request has arrived. */
    holdNext(release: Promise<void>): Promise<void> {
      hold = release;
      return new Promise((r) => (held = r));
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('statement timeouts and lock waits are the infrastructure’s, not the message’s (real MariaDB)', function () {
  this.timeout(60_000);
  let provider: Awaited<ReturnType<typeof startProvider>>;
  let api: TestApi;
  let workers: Workers | undefined;
  let root: Sequelize;
  let env: Record<string, string>;

  before(async () => {
    provider = await startProvider();
    env = {
      TENANT_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS),
      GATEWAY: 'http',
      GATEWAY_URL: provider.url,
      DELIVERY_BACKOFF_MS: '20',
      DELIVERY_ATTEMPTS: '3',
    };
    api = await startApi(env);
    root = rootDb();
  });
  afterEach(async () => {
    await workers?.close();
    workers = undefined;
  });
  after(async () => {
    await root.close();
    await api.stop();
    await provider.close();
  });

  /** An admin session holding row locks in an open transaction, as a long report or a stuck migration would. */
  async function lockRows(db: string, where: string, values: unknown[]) {
    const conn = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
    await conn.query('BEGIN');
    await conn.query(`SELECT id FROM \`${db}\`.messages WHERE ${where} FOR UPDATE`, values);
    return {
      release: async () => {
        await conn.query('ROLLBACK');
        await conn.end();
      },
    };
  }

  /** True while a session of the tenant's database waits in an UPDATE that starts with `prefix`. */
  const waitingIn = async (db: string, prefix: string) =>
    (
      await rows(root, 'SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :db AND INFO LIKE :like', {
        db,
        like: `${prefix}%`,
      })
    ).length > 0;

  const postponed = async (orgId: number, id: number) =>
    ((await Job.fromId<DeliveryJob>(api.deps.deliveryQueue, deliveryJobId(orgId, id)))?.data.outages ?? 0) >= 1;

  const state = async (dbName: string, id: number) =>
    (
      await rows<{ status: string; error_code: string | null; provider_message_id: string | null }>(
        root,
        `SELECT status, error_code, provider_message_id FROM \`${dbName}\`.messages WHERE id = :id`,
        { id },
      )
    )[0]!;
  const ledger = (orgId: number) =>
    rows<{ kind: string; amount: number; reference: string }>(
      api.deps.sharedDb,
      "SELECT kind, amount, reference FROM credit_ledger WHERE org_id = :orgId AND kind <> 'grant' ORDER BY id",
      { orgId },
    );

  /**
   * Waits until the lock has done its work — the delivery was postponed, or (the bug) the run went on to write FAILED,
   * waiting on the same lock — then lets the lock go, and waits for the job to finish.
   */
  async function releaseWhenDecided(t: { id: number; dbName: string }, id: number, lock: { release(): Promise<void> }) {
    const decided = await eventually(
      async () => (await postponed(t.id, id)) || (await waitingIn(t.dbName, "UPDATE messages SET status = 'FAILED'")),
      20_000,
      10,
    );
    await lock.release();
    expect(decided, 'the lock wait timed out').to.equal(true);
    const job = await Job.fromId<DeliveryJob>(api.deps.deliveryQueue, deliveryJobId(t.id, id));
    expect(await eventually(async () => ['completed', 'failed'].includes(await job!.getState()), 20_000, 20)).to.equal(true);
  }

  it('a claim that waits on a row lock past the statement timeout postpones the delivery; it ends SENT, charged once, never refunded', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const sent = await api.request('POST', '/messages', { org: t, body: { to: '+15557770001', channel: 'sms', body: 'locked' } });
    expect(sent.status).to.equal(202);
    const id = sent.body.message.id as number;
    const lock = await lockRows(t.dbName, 'id = ?', [id]);
    workers = startWorkers(testConfig(env), api.deps);
    await releaseWhenDecided(t, id, lock);

    expect(await state(t.dbName, id)).to.deep.equal({
      status: 'SENT',
      error_code: null,
      provider_message_id: `p-${(await api.deps.repo.get(t.id))!.uid}-${id}`,
    });
    expect(await ledger(t.id)).to.deep.equal([{ kind: 'debit', amount: -1, reference: debitReference(id) }]);
    expect(await api.deps.repo.balance(t.id)).to.equal(4);
  });

  it('a SENT write that waits on a row lock past the statement timeout, after the provider accepted: postponed, then SENT, charged once, never refunded', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const sent = await api.request('POST', '/messages', { org: t, body: { to: '+15557770002', channel: 'sms', body: 'accepted' } });
    const id = sent.body.message.id as number;
    let answer!: () => void;
    const arrived = provider.holdNext(new Promise<void>((r) => (answer = r)));
    workers = startWorkers(testConfig(env), api.deps);
    // The provider has the send (the claim is committed): lock the row, then let the provider accept.
    await arrived;
    const lock = await lockRows(t.dbName, 'id = ?', [id]);
    answer();
    await releaseWhenDecided(t, id, lock);

    const uid = (await api.deps.repo.get(t.id))!.uid;
    expect(await state(t.dbName, id)).to.deep.equal({ status: 'SENT', error_code: null, provider_message_id: `p-${uid}-${id}` });
    expect(await ledger(t.id)).to.deep.equal([{ kind: 'debit', amount: -1, reference: debitReference(id) }]);
    expect(await api.deps.repo.balance(t.id)).to.equal(4);
  });

  it('POST /messages whose INSERT waits on a lock past the statement timeout answers 503 DB_BUSY with Retry-After, storing nothing', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    // Every row and the gap above them: an INSERT waits for its insert-intention lock.
    const lock = await lockRows(t.dbName, 'id >= ?', [0]);
    try {
      const res = await api.request('POST', '/messages', { org: t, body: { to: '+15557770003', channel: 'sms', body: 'busy' } });
      expect([res.status, res.body.error?.code, res.headers.get('retry-after')]).to.deep.equal([503, 'DB_BUSY', '1']);
      expect(res.body.error.message).to.not.match(/INSERT|max_statement_time/i);
    } finally {
      await lock.release();
    }
    expect(await rows(root, `SELECT id FROM \`${t.dbName}\`.messages`)).to.deep.equal([]);
    expect(await api.deps.repo.balance(t.id)).to.equal(5);
  });

  it('the same when the INSERT is a prepared statement (the session ran it before): 503 DB_BUSY, and the session serves on', async () => {
    const t = await createTenant(api.deps, { credits: 5 });
    const post = (body: string) => api.request('POST', '/messages', { org: t, body: { to: '+15557770004', channel: 'sms', body } });
    // One request at a time: the tenant's one session serves them all, as text first, then prepared (preparedWhenRepeated).
    const executes = async () => Number((await rows<{ Value: string }>(root, "SHOW GLOBAL STATUS LIKE 'Com_stmt_execute'"))[0]!.Value);
    expect((await post('first, as text')).status).to.equal(202);
    const before = await executes();
    expect((await post('second, prepared')).status).to.equal(202);
    expect(await executes(), 'the second INSERT ran as a prepared statement').to.be.greaterThan(before);
    const [first] = await rows<{ id: number }>(root, `SELECT MAX(id) AS id FROM \`${t.dbName}\`.messages`);
    const lock = await lockRows(t.dbName, 'id >= ?', [0]);
    try {
      const res = await post('busy');
      expect([res.status, res.body.error?.code, res.headers.get('retry-after')]).to.deep.equal([503, 'DB_BUSY', '1']);
    } finally {
      await lock.release();
    }
    expect((await rows<{ id: number }>(root, `SELECT MAX(id) AS id FROM \`${t.dbName}\`.messages`))[0]!.id).to.equal(first!.id);
    expect((await post('after')).status, 'the session was not lost').to.equal(202);
  });
});
