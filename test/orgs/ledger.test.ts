/**
 * The credit ledger: a balance never goes below zero (code and database), a reference is applied once even under
 * concurrency, and the balance always equals the sum of the ledger.
 */
import { expect } from 'chai';
import type { Sequelize } from 'sequelize';
import type { Deps } from '../../src/deps.js';
import { AppError } from '../../src/platform/lib/errors.js';
import { RUN, rootDb, rows, testDeps, uniqueName, rejection } from '../helpers.js';

const SHARED = `${RUN}_shared`;

describe('credit ledger', function () {
  this.timeout(30_000);

  let deps: Deps;
  let root: Sequelize;

  before(() => {
    deps = testDeps({}, { subscribe: false });
    root = rootDb();
  });
  after(async () => {
    await deps.close();
    await root.close();
  });

  /** A provisioned org with `credits` (its initial grant is in the ledger). */
  async function org(credits: number): Promise<number> {
    const { org: o } = await deps.orgs.create({ name: uniqueName('ledger'), credits, server: 'default' });
    return o.id;
  }

  async function balance(id: number): Promise<number> {
    const [r] = await rows<{ b: number }>(root, `SELECT credit_balance AS b FROM \`${SHARED}\`.orgs WHERE id = :id`, { id });
    return Number(r!.b);
  }

  async function ledgerRows(id: number, reference?: string) {
    return rows<{ id: number; amount: number; balance_after: number; kind: string; reference: string }>(
      root,
      `SELECT id, amount, balance_after, kind, reference FROM \`${SHARED}\`.credit_ledger WHERE org_id = :id ${reference ? 'AND reference = :reference' : ''} ORDER BY id`,
      { id, reference },
    );
  }

  /** The invariant: balance = sum of the ledger. */
  async function expectBalanced(id: number, expected: number): Promise<void> {
    expect(await balance(id)).to.equal(expected);
    expect(await deps.ledger.sum(id)).to.equal(expected);
  }

  describe('the database itself', () => {
    it('refuses a negative balance (CHECK constraint), whatever the code does', async () => {
      const id = await org(3);
      for (const set of ['-1', 'credit_balance - 4']) {
        let failure: { errno?: number; sqlMessage?: string } | undefined;
        try {
          await root.query(`UPDATE \`${SHARED}\`.orgs SET credit_balance = ${set} WHERE id = :id`, { replacements: { id } });
        } catch (err) {
          failure = (err as { original?: { errno?: number; sqlMessage?: string } }).original;
        }
        // MariaDB: ER_CONSTRAINT_FAILED (4025); MySQL 8: ER_CHECK_CONSTRAINT_VIOLATED (3819). By number: mysql2 names
        // codes after MySQL's table, where 4025 means something else.
        expect([4025, 3819], set).to.include(failure?.errno);
        expect(failure?.sqlMessage).to.include('orgs_credit_balance_non_negative');
        expect(await balance(id)).to.equal(3);
      }
      const [constraint] = await rows(
        root,
        `SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = :db AND TABLE_NAME = 'orgs' AND CONSTRAINT_TYPE = 'CHECK'`,
        { db: SHARED },
      );
      expect(constraint).to.deep.equal({ CONSTRAINT_NAME: 'orgs_credit_balance_non_negative' });
    });

    it('refuses a second ledger row with the same (org, reference)', async () => {
      const id = await org(1);
      let code: string | undefined;
      try {
        await root.query(
          `INSERT INTO \`${SHARED}\`.credit_ledger (org_id, kind, amount, balance_after, reference) VALUES (:id, 'grant', 1, 2, 'initial-grant')`,
          { replacements: { id } },
        );
      } catch (err) {
        code = (err as { original?: { code?: string } }).original?.code;
      }
      expect(code).to.equal('ER_DUP_ENTRY');
      await expectBalanced(id, 1);
    });
  });

  describe('ledger.apply', () => {
    it('applies a reference once: the second apply is `duplicate` and returns the first entry', async () => {
      const id = await org(10);
      const first = await deps.ledger.apply({ orgId: id, kind: 'grant', amount: 7, reference: 'once' });
      expect(first.outcome).to.equal('applied');
      if (first.outcome !== 'applied') return;
      expect(first.entry).to.include({ orgId: id, kind: 'grant', amount: 7, balanceAfter: 17, reference: 'once', messageId: null });

      const second = await deps.ledger.apply({ orgId: id, kind: 'grant', amount: 7, reference: 'once' });
      expect(second.outcome).to.equal('duplicate');
      if (second.outcome !== 'duplicate') return;
      expect(second.entry).to.deep.equal(first.entry);
      await expectBalanced(id, 17);
      expect(await ledgerRows(id, 'once')).to.have.length(1);
    });

    it('applies one reference exactly once under 20 concurrent applies', async () => {
      const id = await org(10);
      const results = await Promise.all(
        Array.from({ length: 20 }, () => deps.ledger.apply({ orgId: id, kind: 'debit', amount: -3, reference: 'race', messageId: 99 })),
      );
      const applied = results.filter((r) => r.outcome === 'applied');
      const duplicates = results.filter((r) => r.outcome === 'duplicate');
      expect(applied, JSON.stringify(results.map((r) => r.outcome))).to.have.length(1);
      expect(duplicates).to.have.length(19);
      const entry = (applied[0] as { entry: { id: number } }).entry;
      for (const d of duplicates) expect((d as { entry: { id: number } }).entry).to.deep.equal(entry);
      await expectBalanced(id, 7);
      expect(await ledgerRows(id, 'race')).to.have.length(1);
    });

    it('answers `duplicate`, not `insufficient`, to concurrent replays of a debit that emptied the balance', async () => {
      // Balance 5, debit 3 under one reference, 20 times at once: the first leaves 2; the others must see their
      // reference as already applied (a worker retrying a charge must not take it for "not enough credit").
      const id = await org(5);
      const results = await Promise.all(
        Array.from({ length: 20 }, () => deps.ledger.apply({ orgId: id, kind: 'debit', amount: -3, reference: 'race-low', messageId: 7 })),
      );
      const outcomes = results.map((r) => r.outcome);
      expect(
        outcomes.filter((o) => o === 'applied'),
        JSON.stringify(outcomes),
      ).to.have.length(1);
      expect(
        outcomes.filter((o) => o === 'duplicate'),
        JSON.stringify(outcomes),
      ).to.have.length(19);
      await expectBalanced(id, 2);
      expect(await ledgerRows(id, 'race-low')).to.have.length(1);
    });

    it('50 concurrent debits of 1 on a balance of 10: exactly 10 applied, 40 insufficient, balance 0', async () => {
      const id = await org(10);
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          deps.ledger.apply({ orgId: id, kind: 'debit', amount: -1, reference: `debit-${i}`, messageId: i + 1 }),
        ),
      );
      const applied = results.filter((r) => r.outcome === 'applied');
      const insufficient = results.filter((r) => r.outcome === 'insufficient');
      expect(applied).to.have.length(10);
      expect(insufficient).to.have.length(40);
      for (const r of insufficient) expect(r).to.deep.equal({ outcome: 'insufficient', balance: 0 });
      // Each debit saw its own balance: the balances after are 9, 8, …, 0, once each.
      const after = applied.map((r) => (r as { entry: { balanceAfter: number } }).entry.balanceAfter).sort((x, y) => x - y);
      expect(after).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      await expectBalanced(id, 0);
      const debits = (await ledgerRows(id)).filter((r) => r.kind === 'debit');
      expect(debits).to.have.length(10);
    });

    it('answers no-org for an org that does not exist, and writes nothing', async () => {
      const r = await deps.ledger.apply({ orgId: 987654321, kind: 'grant', amount: 1, reference: 'ghost' });
      expect(r).to.deep.equal({ outcome: 'no-org' });
      expect(await rows(root, `SELECT id FROM \`${SHARED}\`.credit_ledger WHERE org_id = 987654321`)).to.have.length(0);
    });
  });

  describe('orgs.credit', () => {
    it('refuses an adjustment below zero with 409 INSUFFICIENT_BALANCE and changes nothing', async () => {
      const id = await org(10);
      const err = await rejection(deps.orgs.credit(id, -1000, 'too-much'));
      expect(err).to.be.instanceOf(AppError);
      expect(err).to.include({ code: 'INSUFFICIENT_BALANCE', status: 409 });
      expect((err as AppError).details).to.deep.equal({ balance: 10 });
      await expectBalanced(id, 10);
      expect(await ledgerRows(id, 'too-much')).to.have.length(0);

      // The refused reference was not consumed: a valid amount under it applies.
      const ok = await deps.orgs.credit(id, -4, 'too-much');
      expect(ok.replayed).to.equal(false);
      expect(ok.entry).to.include({ kind: 'adjustment', amount: -4, balanceAfter: 6 });
      expect(ok.org.creditBalance).to.equal(6);
      await expectBalanced(id, 6);
    });

    it('replays a reference with the same amount, and refuses it with another amount (422 IDEMPOTENCY_KEY_REUSED)', async () => {
      const id = await org(10);
      const first = await deps.orgs.credit(id, 5, 'grant-ref');
      expect(first.replayed).to.equal(false);
      expect(first.org.creditBalance).to.equal(15);

      const replay = await deps.orgs.credit(id, 5, 'grant-ref');
      expect(replay.replayed).to.equal(true);
      expect(replay.entry).to.deep.equal(first.entry);
      expect(replay.org.creditBalance).to.equal(15);

      for (const amount of [6, -5]) {
        const err = await rejection(deps.orgs.credit(id, amount, 'grant-ref'));
        expect(err, String(amount)).to.be.instanceOf(AppError);
        expect(err).to.include({ code: 'IDEMPOTENCY_KEY_REUSED', status: 422 });
      }
      await expectBalanced(id, 15);
      expect(await ledgerRows(id, 'grant-ref')).to.have.length(1);
    });

    it('refuses to credit an org that was dropped (404 ORG_NOT_FOUND)', async () => {
      const id = await org(2);
      await deps.orgs.drop(id);
      const err = await rejection(deps.orgs.credit(id, 1, 'after-drop'));
      expect(err).to.include({ code: 'ORG_NOT_FOUND', status: 404 });
      await expectBalanced(id, 2);
    });
  });
});
