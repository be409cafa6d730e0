-- Locks account $1's row until the transaction ends, before its idempotency key is looked
-- up: a concurrent request with the same key (in any process) then finds the first one's
-- answer instead of also accepting.
SELECT account_id FROM account WHERE account_id = $1 FOR UPDATE
