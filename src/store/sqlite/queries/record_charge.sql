-- The ledger line for a settlement of ?4 messages costing ?2 (stored as a debit).
INSERT INTO balance_entry (account_id, kind, amount, messages, created_at)
VALUES (?1, 'charge', -?2, ?4, ?3);
