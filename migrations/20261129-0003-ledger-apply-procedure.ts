/**
 * The ledger's change as one stored procedure: a debit, refund or grant is one round trip to the shared DB (CALL)
 * instead of four (START TRANSACTION, conditional UPDATE, ledger INSERT, COMMIT), with the same transaction inside.
 * src/credits/ledger.ts calls it and documents the rule; its tests (test/ledger.test.ts) run through it.
 *
 * Answers one row: outcome `applied` (the new entry), `duplicate` (the entry already written under this reference),
 * `insufficient` (with the balance) or `no-org`. Any other error rolls back and is raised again.
 */
import type { QueryInterface } from 'sequelize';

const CREATE = `
CREATE PROCEDURE ledger_apply(
  IN p_org INT UNSIGNED, IN p_kind VARCHAR(16), IN p_amount BIGINT,
  IN p_reference VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, IN p_message BIGINT UNSIGNED, IN p_created DATETIME(3))
MODIFIES SQL DATA
BEGIN
  DECLARE v_balance BIGINT DEFAULT NULL;
  -- The unique (org, reference) key decides a race between two applies of one reference: the loser answers the winner's entry.
  DECLARE EXIT HANDLER FOR 1062
  BEGIN
    ROLLBACK;
    SELECT 'duplicate' AS outcome, l.id, l.kind, l.amount, l.balance_after, l.message_id, l.created_at, NULL AS balance
      FROM credit_ledger l WHERE l.org_id = p_org AND l.reference = p_reference;
  END;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  UPDATE orgs SET credit_balance = LAST_INSERT_ID(credit_balance + p_amount), updated_at = CURRENT_TIMESTAMP(3)
    WHERE id = p_org AND credit_balance + p_amount >= 0;
  IF ROW_COUNT() = 1 THEN
    SET v_balance = LAST_INSERT_ID();
    INSERT INTO credit_ledger (org_id, kind, amount, balance_after, message_id, reference, created_at)
      VALUES (p_org, p_kind, p_amount, v_balance, p_message, p_reference, p_created);
    COMMIT;
    SELECT 'applied' AS outcome, LAST_INSERT_ID() AS id, p_kind AS kind, p_amount AS amount, v_balance AS balance_after,
      p_message AS message_id, p_created AS created_at, v_balance AS balance;
  ELSE
    SELECT credit_balance INTO v_balance FROM orgs WHERE id = p_org;
    ROLLBACK;
    IF v_balance IS NULL THEN
      SELECT 'no-org' AS outcome, NULL AS id, NULL AS kind, NULL AS amount, NULL AS balance_after, NULL AS message_id, NULL AS created_at, NULL AS balance;
    ELSEIF EXISTS (SELECT 1 FROM credit_ledger WHERE org_id = p_org AND reference = p_reference) THEN
      -- The UPDATE waited on the org row: a concurrent apply of this very reference may have just emptied the balance.
      SELECT 'duplicate' AS outcome, l.id, l.kind, l.amount, l.balance_after, l.message_id, l.created_at, NULL AS balance
        FROM credit_ledger l WHERE l.org_id = p_org AND l.reference = p_reference;
    ELSE
      SELECT 'insufficient' AS outcome, NULL AS id, NULL AS kind, NULL AS amount, NULL AS balance_after, NULL AS message_id, NULL AS created_at,
        v_balance AS balance;
    END IF;
  END IF;
END`;

export async function up(qi: QueryInterface): Promise<void> {
  await qi.sequelize.query('DROP PROCEDURE IF EXISTS ledger_apply');
  await qi.sequelize.query(CREATE);
}

export async function down(qi: QueryInterface): Promise<void> {
  await qi.sequelize.query('DROP PROCEDURE IF EXISTS ledger_apply');
}
