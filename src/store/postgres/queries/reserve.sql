-- Reserves $2 of account $1's balance at $3 and counts $5 messages accepted on day $4. The
-- account row is already locked (lock_account.sql, first in every accept), so the order in
-- which PostgreSQL runs the CTE and the insert cannot invert the account-then-usage order.
WITH reserved AS (
    UPDATE account SET reserved = reserved + $2, updated_at = $3 WHERE account_id = $1
)
INSERT INTO account_usage (account_id, day, accepted, sent) VALUES ($1, $4, $5, 0)
ON CONFLICT (account_id, day) DO UPDATE SET accepted = account_usage.accepted + excluded.accepted
