-- Queues a delivery of the account again, due now (one in flight keeps its claim).
UPDATE webhook_delivery SET state = 'pending', due_at = $3, claimed_until = 0, finished_at = NULL
WHERE account_id = $1 AND delivery_id = $2 AND state <> 'pending'
