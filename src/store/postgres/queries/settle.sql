-- Settles $4 messages of account $1 handed to a provider at $3, costing $2: the reservation
-- becomes a debit, the ledger gets its charge line and day $5's sent count grows.
-- One statement (a round trip and a statement per batch, not three), whose parts each read
-- the one before's RETURNING, so they run in this order: the account row is locked before
-- its usage row, as everywhere else. (Statements in a WITH that do not read each other run
-- in no set order, and two transactions taking the two rows in opposite orders could
-- deadlock.)
WITH charged AS (
    UPDATE account SET balance = balance - $2, reserved = reserved - $2, updated_at = $3
    WHERE account_id = $1
    RETURNING account_id
), counted AS (
    INSERT INTO account_usage (account_id, day, accepted, sent)
    SELECT account_id, $5, 0, $4 FROM charged
    ON CONFLICT (account_id, day) DO UPDATE SET sent = account_usage.sent + excluded.sent
    RETURNING account_id
)
INSERT INTO balance_entry (account_id, kind, amount, messages, created_at)
SELECT account_id, 'charge', -($2::bigint), $4::bigint, $3::bigint FROM counted
