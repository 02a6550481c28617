/** The credit ledger: every balance change is one transaction (conditional update + ledger row, unique per reference). */
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { callRows, selectRows, statementsOf, type TransactionStatements } from '../../platform/db/lean-query.js';
import { tracing } from '../../platform/telemetry/tracing.js';

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

interface ApplyValues {
  orgId: number;
  kind: LedgerKind;
  amount: number;
  reference: string;
  messageId?: number;
}
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

const FIND = 'SELECT * FROM credit_ledger WHERE org_id = :orgId AND reference = :reference';

/** The key of an (org, reference) entry in the set `existing()` answers. */
export const ledgerKey = (orgId: number, reference: string) => `${orgId} ${reference}`;

/** Creates the ledger over the shared DB. */
export function createLedger(db: Sequelize) {
  async function find(orgId: number, reference: string, transaction?: Transaction): Promise<LedgerEntry | undefined> {
    const values = { orgId, reference };
    const [r] = transaction ? await statementsOf(transaction).select<Row>(FIND, values) : await selectRows<Row>(db, FIND, values);
    return r && toEntry(r);
  }

  /**
   * The change itself, in the caller's transaction: the conditional UPDATE hands the new balance back in its OK packet
   * (LAST_INSERT_ID(expr), no SELECT), then the ledger row. Values are placeholders, never interpolated.
   */
  async function change(tx: TransactionStatements, values: ApplyValues): Promise<ApplyResult> {
    const { orgId, amount, reference } = values;
    const updated = await tx.write(
      `UPDATE orgs SET credit_balance = LAST_INSERT_ID(credit_balance + :amount), updated_at = CURRENT_TIMESTAMP(3)
       WHERE id = :orgId AND credit_balance + :amount >= 0`,
      { orgId, amount },
    );
    if (updated.affectedRows !== 1) {
      const [org] = await tx.select<Row>('SELECT credit_balance FROM orgs WHERE id = ?', [orgId]);
      if (!org) return { outcome: 'no-org' };
      // The UPDATE waited on the org row: a concurrent apply of this very reference may have just emptied the balance.
      const [winner] = await tx.select<Row>(FIND, { orgId, reference });
      if (winner) return { outcome: 'duplicate', entry: toEntry(winner) };
      return { outcome: 'insufficient', balance: Number(org.credit_balance) };
    }
    // The row is answered as written, not read back: created_at is set here, as an exact UTC string (the session
    // is in UTC).
    const createdAt = new Date();
    const balanceAfter = updated.insertId;
    const messageId = values.messageId ?? null;
    const inserted = await tx.write(
      `INSERT INTO credit_ledger (org_id, kind, amount, balance_after, message_id, reference, created_at)
       VALUES (:orgId, :kind, :amount, :balanceAfter, :messageId, :reference, :createdAt)`,
      { ...values, messageId, balanceAfter, createdAt: createdAt.toISOString().slice(0, 23).replace('T', ' ') },
    );
    const entry: LedgerEntry = { id: inserted.insertId, orgId, kind: values.kind, amount, balanceAfter, messageId, reference, createdAt };
    return { outcome: 'applied', entry };
  }

  /**
   * Applies a signed change once per (org, reference): the balance never goes below zero (the UPDATE is
   * conditional and the column has a CHECK), and a reference already used answers `duplicate` with the first entry.
   */
  async function apply(input: ApplyValues & { transaction?: Transaction }): Promise<ApplyResult> {
    const { transaction: outer, ...values } = input;
    if (outer) {
      // Inside a caller's transaction the reference is looked up first: a duplicate-key error would spoil it.
      const existing = await find(input.orgId, input.reference, outer);
      if (existing) return { outcome: 'duplicate', entry: existing };
      return change(statementsOf(outer), values);
    }
    // On its own: one CALL (migrations/20261129-0003-ledger-apply-procedure.ts runs the same rule in one transaction
    // in the database: conditional UPDATE, ledger row, and the unique (org, reference) key deciding a race).
    const createdAt = new Date();
    const [r] = await callRows<Row>(db, 'CALL ledger_apply(?, ?, ?, ?, ?, ?)', [
      values.orgId,
      values.kind,
      values.amount,
      values.reference,
      values.messageId ?? null,
      createdAt.toISOString().slice(0, 23).replace('T', ' '),
    ]);
    switch (r?.outcome) {
      case 'applied':
        // As written: the created_at it was given, not a re-read (mysql2 would parse it in the session's zone anyway).
        return { outcome: 'applied', entry: { ...toEntry({ ...r, org_id: values.orgId, reference: values.reference }), createdAt } };
      case 'duplicate':
        return { outcome: 'duplicate', entry: toEntry({ ...r, org_id: values.orgId, reference: values.reference }) };
      case 'insufficient':
        return { outcome: 'insufficient', balance: Number(r.balance) };
      case 'no-org':
        return { outcome: 'no-org' };
      default:
        throw new Error(`ledger_apply answered ${JSON.stringify(r?.outcome)}`);
    }
  }

  /**
   * Which of these (org, reference) entries exist, in one query on the unique (org, reference) key: the anti-join of
   * the reconciler's repairs (a debit without its refund), for a page of messages of many orgs at once.
   */
  async function existing(keys: readonly { orgId: number; reference: string }[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set();
    const byOrg = new Map<number, string[]>();
    for (const k of keys) (byOrg.get(k.orgId) ?? byOrg.set(k.orgId, []).get(k.orgId)!).push(k.reference);
    const values: unknown[] = [];
    const clauses = [...byOrg].map(([orgId, references]) => {
      values.push(orgId, ...references);
      return `(org_id = ? AND reference IN (${references.map(() => '?').join(', ')}))`;
    });
    const found = await selectRows<Row>(db, `SELECT org_id, reference FROM credit_ledger WHERE ${clauses.join(' OR ')}`, values);
    return new Set(found.map((r) => ledgerKey(Number(r.org_id), String(r.reference))));
  }

  return {
    // With tracing on, each change is a `ledger.apply` span (kind, reference, outcome; never another org's amounts).
    apply: tracing.traced('ledger.apply', apply, {
      of: (input) => ({ 'ledger.kind': input.kind, 'ledger.reference': input.reference }),
      result: (result) => ({ 'ledger.outcome': result.outcome }),
    }),
    find,
    existing,
    /** Sum of the org's ledger (must always equal its balance). */
    /** The org's entries with ids after `afterId`, oldest first (an export's pages: served by the org_id index). */
    async page(orgId: number, afterId: number, limit: number): Promise<LedgerEntry[]> {
      const found = await selectRows<Row>(db, 'SELECT * FROM credit_ledger WHERE org_id = ? AND id > ? ORDER BY id LIMIT ?', [
        orgId,
        afterId,
        limit,
      ]);
      return found.map(toEntry);
    },
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
