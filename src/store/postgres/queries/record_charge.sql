-- The ledger line for a settlement of $3 messages costing $2 (stored as a debit) at $4.
INSERT INTO balance_entry (account_id, kind, amount, messages, created_at)
VALUES ($1, 'charge', -($2::bigint), $3, $4)
