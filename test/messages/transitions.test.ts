/** The message state machine's fenced writes, on a real tenant database: what each write may and may not overwrite. */
import { expect } from 'chai';
import type { Sequelize } from 'sequelize';
import type { Deps } from '../../src/deps.js';
import {
  claim,
  markFailed,
  markSent,
  markSentAfterFailure,
  readMessage,
  recordLateAcceptance,
  requeue,
} from '../../src/messages/data-access/message-transitions.js';
import { createTenant, provisionedOrg, testDeps } from '../helpers.js';

describe('message state machine (fenced writes on the tenant DB)', () => {
  let deps: Deps;
  let orgId: number;
  before(async () => {
    deps = testDeps({}, { subscribe: false });
    orgId = (await createTenant(deps)).id;
  });
  after(() => deps.close());

  const withDb = async <T>(fn: (db: Sequelize) => Promise<T>) =>
    deps.tenantDbs.withTenant(await provisionedOrg(deps, orgId), (db) => fn(db.sequelize));
  const insert = (db: Sequelize) =>
    db
      .query("INSERT INTO messages (`to`, channel, body, cost) VALUES ('+15550001111', 'sms', 'x', 1)")
      .then(([id]) => Number(id as unknown as number));

  it('claim moves QUEUED to SENDING and hands out a new attempt number each time (a takeover gets the next one)', () =>
    withDb(async (db) => {
      const id = await insert(db);
      expect(await claim(db, id)).to.equal(1);
      expect(await claim(db, id), 'a second run takes over').to.equal(2);
      expect(await readMessage(db, id)).to.include({ status: 'SENDING', attempts: 2 });
    }));

  it('a run that lost the fence can neither mark SENT, nor requeue, nor fail the message; the holder can', () =>
    withDb(async (db) => {
      const id = await insert(db);
      const late = (await claim(db, id))!;
      const current = (await claim(db, id))!;
      expect(await markSent(db, id, late, 'p-late')).to.equal(false);
      expect(await requeue(db, id, late, 'X', 'x')).to.equal(false);
      expect(await markFailed(db, id, { attempt: late }, 'X', 'x')).to.equal(false);
      expect(await markSent(db, id, current, 'p-1')).to.equal(true);
      expect(await readMessage(db, id)).to.include({ status: 'SENT', providerMessageId: 'p-1', attempts: current });
    }));

  it('SENT and FAILED are final: no claim, requeue, fail or second SENT moves a message out of them', () =>
    withDb(async (db) => {
      const sent = await insert(db);
      const a = (await claim(db, sent))!;
      expect(await markSent(db, sent, a, 'p')).to.equal(true);
      expect(await claim(db, sent)).to.equal(undefined);
      expect(await requeue(db, sent, a, 'X', 'x')).to.equal(false);
      expect(await markFailed(db, sent, { attempt: a }, 'X', 'x')).to.equal(false);
      expect(await markFailed(db, sent, { seen: a }, 'X', 'x')).to.equal(false);
      expect(await markSent(db, sent, a, 'again')).to.equal(false);
      expect(await readMessage(db, sent)).to.include({ status: 'SENT', providerMessageId: 'p' });

      const failed = await insert(db);
      expect(await markFailed(db, failed, { seen: 0 }, 'INSUFFICIENT_CREDITS', 'no credit')).to.equal(true);
      expect(await claim(db, failed)).to.equal(undefined);
      expect(await markSent(db, failed, 1, 'p')).to.equal(false);
      expect(await readMessage(db, failed)).to.include({ status: 'FAILED' });
    }));

  it('failing from what a run saw (not claimed) misses once another run claimed it meanwhile', () =>
    withDb(async (db) => {
      const id = await insert(db);
      const seen = (await readMessage(db, id))!.attempts;
      await claim(db, id);
      expect(await markFailed(db, id, { seen }, 'ORG_SUSPENDED', 'x')).to.equal(false);
      expect((await readMessage(db, id))!.status).to.equal('SENDING');
    }));

  it('a late acceptance is recorded on the row (provider id kept if none), nothing else changes', () =>
    withDb(async (db) => {
      const id = await insert(db);
      const a = (await claim(db, id))!;
      await markFailed(db, id, { attempt: a }, 'PROVIDER_UNAVAILABLE', 'x');
      await recordLateAcceptance(db, id, 'p-late');
      expect(await readMessage(db, id)).to.include({ status: 'FAILED', providerMessageId: 'p-late' });
    }));

  it('a row carrying the provider’s id (an accepted send) is never failed, by the run holding it or by one that saw it', () =>
    withDb(async (db) => {
      const id = await insert(db);
      const late = (await claim(db, id))!;
      const current = (await claim(db, id))!;
      await recordLateAcceptance(db, id, 'p-accepted'); // the late run's send was accepted
      expect(await markFailed(db, id, { attempt: current }, 'PROVIDER_HTTP_503', 'x')).to.equal(false);
      expect(await markFailed(db, id, { seen: current }, 'ORG_SUSPENDED', 'x')).to.equal(false);
      expect(await readMessage(db, id)).to.include({ status: 'SENDING', providerMessageId: 'p-accepted' });
      expect(await markSent(db, id, late, 'p-accepted')).to.equal(false);
      expect(await markSent(db, id, current, 'p-accepted')).to.equal(true);
    }));

  it('FAILED is left only for SENT, only with the provider’s id on the row, and only once', () =>
    withDb(async (db) => {
      const plain = await insert(db);
      const a = (await claim(db, plain))!;
      expect(await markFailed(db, plain, { attempt: a }, 'PROVIDER_HTTP_400', 'refused')).to.equal(true);
      expect(await markSentAfterFailure(db, plain), 'no evidence of acceptance').to.equal(false);
      expect(await readMessage(db, plain)).to.include({ status: 'FAILED' });

      const accepted = await insert(db);
      const b = (await claim(db, accepted))!;
      expect(await markFailed(db, accepted, { attempt: b }, 'PROVIDER_HTTP_503', 'x')).to.equal(true);
      await recordLateAcceptance(db, accepted, 'p-late');
      expect(await markSentAfterFailure(db, accepted)).to.equal(true);
      expect(await markSentAfterFailure(db, accepted), 'a second settlement changes nothing').to.equal(false);
      const m = await readMessage(db, accepted);
      expect(m).to.include({ status: 'SENT', providerMessageId: 'p-late' });
      const [row] = (
        await db.query('SELECT error_code, sent_at FROM messages WHERE id = :id', { replacements: { id: accepted }, plain: false })
      )[0] as {
        error_code: string | null;
        sent_at: Date | null;
      }[];
      expect(row!.error_code).to.equal(null);
      expect(row!.sent_at).to.be.instanceOf(Date);
    }));
});
