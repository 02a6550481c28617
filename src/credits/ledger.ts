/** The credit ledger: every balance change is one transaction (conditional update + ledger row, unique per reference). */
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { isDuplicateKey } from '../lib/errors.js';

export type LedgerKind = 'grant' | 'debit' | 'refund' | 'adjustment';

export interface LedgerEntry {
  id: number;
  orgId: number;
  kind: LedgerKind;
  amount: number;
  balanceAfter: number;
  messageId: number | null;
  reference: string;
  createdAt: Date;
}

export type ApplyResult =
  | { outcome: 'applied'; entry: LedgerEntry }
  | { outcome: 'duplicate'; entry: LedgerEntry }
  | { outcome: 'insufficient'; balance: number }
  | { outcome: 'no-org' };

type Row = Record<string, unknown>;
const toEntry = (r: Row): LedgerEntry => ({
  id: Number(r.id),
  orgId: Number(r.org_id),
  kind: r.kind as LedgerKind,
  amount: Number(r.amount),
  balanceAfter: Number(r.balance_after),
  messageId: r.message_id == null ? null : Number(r.message_id),
  reference: String(r.reference),
  createdAt: new Date(r.created_at as Date),
});

/** Creates the ledger over the shared DB. */
export function createLedger(db: Sequelize) {
  async function find(orgId: number, reference: string, transaction?: Transaction): Promise<LedgerEntry | undefined> {
    const [r] = await db.query<Row>('SELECT * FROM credit_ledger WHERE org_id = :orgId AND reference = :reference', {
      replacements: { orgId, reference },
      type: QueryTypes.SELECT,
      transaction,
    });
    return r && toEntry(r);
  }

  /**
   * Applies a signed change once per (org, reference): the balance never goes below zero (the UPDATE is
   * conditional and the column has a CHECK), and a reference already used answers `duplicate` with the first entry.
   */
  async function apply(input: {
    orgId: number;
    kind: LedgerKind;
    amount: number;
    reference: string;
    messageId?: number;
    transaction?: Transaction;
  }): Promise<ApplyResult> {
    const { transaction: outer, ...values } = input;
    // Inside a caller's transaction the reference is looked up first: a duplicate-key error would spoil that
    // transaction. On its own, the unique (org, reference) key decides: a repeat costs a rolled-back transaction
    // (answered with the first entry below) instead of every apply costing a lookup.
    if (outer) {
      const existing = await find(input.orgId, input.reference, outer);
      if (existing) return { outcome: 'duplicate', entry: existing };
    }
    const change = async (transaction: Transaction): Promise<ApplyResult> => {
      const [, meta] = await db.query(
        'UPDATE orgs SET credit_balance = credit_balance + :amount, updated_at = CURRENT_TIMESTAMP(3) WHERE id = :orgId AND credit_balance + :amount >= 0',
        { replacements: values, transaction },
      );
      const [org] = await db.query<Row>('SELECT credit_balance FROM orgs WHERE id = :orgId', {
        replacements: values,
        type: QueryTypes.SELECT,
        transaction,
      });
      if (!org) return { outcome: 'no-org' } as const;
      if ((meta as { affectedRows?: number }).affectedRows !== 1) {
        // The UPDATE waited on the org row: a concurrent apply of this very reference may have just emptied the balance.
        const winner = await find(input.orgId, input.reference, transaction);
        if (winner) return { outcome: 'duplicate', entry: winner } as const;
        return { outcome: 'insufficient', balance: Number(org.credit_balance) } as const;
      }
      // The row is answered as written, not read back: created_at is set here, as an exact UTC string (the session
      // is in UTC; a Date would lose its milliseconds in the driver's escaping).
      const createdAt = new Date();
      const balanceAfter = Number(org.credit_balance);
      const messageId = values.messageId ?? null;
      const [id] = await db.query(
        `INSERT INTO credit_ledger (org_id, kind, amount, balance_after, message_id, reference, created_at)
         VALUES (:orgId, :kind, :amount, :balanceAfter, :messageId, :reference, :createdAt)`,
        {
          replacements: { ...values, messageId, balanceAfter, createdAt: createdAt.toISOString().slice(0, 23).replace('T', ' ') },
          type: QueryTypes.INSERT,
          transaction,
        },
      );
      const entry: LedgerEntry = {
        id: Number(id),
        orgId: values.orgId,
        kind: values.kind,
        amount: values.amount,
        balanceAfter,
        messageId,
        reference: values.reference,
        createdAt,
      };
      return { outcome: 'applied', entry } as const;
    };
    try {
      return outer ? await change(outer) : await db.transaction(change);
    } catch (err) {
      // A concurrent apply of the same reference won the race: its row is the answer.
      if (!isDuplicateKey(err) || outer) throw err;
      const entry = await find(input.orgId, input.reference);
      if (!entry) throw err;
      return { outcome: 'duplicate', entry };
    }
  }

  return {
    apply,
    find,
    /** Sum of the org's ledger (must always equal its balance). */
    async sum(orgId: number): Promise<number> {
      const [r] = await db.query<Row>('SELECT COALESCE(SUM(amount), 0) AS total FROM credit_ledger WHERE org_id = :orgId', {
        replacements: { orgId },
        type: QueryTypes.SELECT,
      });
      return Number(r?.total ?? 0);
    },
  };
}

export type Ledger = ReturnType<typeof createLedger>;
