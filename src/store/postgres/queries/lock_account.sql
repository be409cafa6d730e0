-- Locks the rows of the accounts in the JSON array $1 until the transaction ends, in id
-- order (so two batches locking the same accounts cannot deadlock), before any of their
-- idempotency keys or balances is looked at: a concurrent request in another process then
-- waits and finds the first one's answer and what it spent. (An accept batch of one account
-- locks its row by reading its figures first instead: account_figures.sql, FOR UPDATE.)
SELECT a.account_id FROM account AS a
WHERE a.account_id IN (SELECT jsonb_array_elements_text($1::jsonb))
ORDER BY a.account_id
FOR UPDATE
