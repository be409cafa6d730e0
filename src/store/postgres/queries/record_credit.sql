-- The ledger line for money added to an account.
INSERT INTO balance_entry (account_id, kind, amount, messages, created_at)
VALUES ($1, 'credit', $2, 0, $3)
