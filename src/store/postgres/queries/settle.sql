-- Charges $2 to account $1 for $4 messages handed to a provider at $3: the reservation
-- becomes a debit, a ledger line records it, and day $5's sent count grows. One statement:
-- PostgreSQL prepares one command at a time.
WITH charged AS (
    UPDATE account SET balance = balance - $2, reserved = reserved - $2, updated_at = $3
    WHERE account_id = $1
), ledger AS (
    INSERT INTO balance_entry (account_id, kind, amount, messages, created_at)
    VALUES ($1, 'charge', -($2::bigint), $4, $3)
)
INSERT INTO account_usage (account_id, day, accepted, sent) VALUES ($1, $5, 0, $4)
ON CONFLICT (account_id, day) DO UPDATE SET sent = account_usage.sent + excluded.sent
