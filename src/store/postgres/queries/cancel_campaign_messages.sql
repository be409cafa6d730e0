-- Cancels up to $3 unsent messages of canceled campaign $1 (queued, or given back held by a
-- worker) and releases their reservations; returns what to release. The rows are locked
-- (skipping those a claim holds) and looked at again under the lock, so a message a worker
-- claimed meanwhile is left to the worker's campaign gate.
UPDATE message
SET status = 'canceled', billing = 'released', lease_until = 0, claimed_by = NULL,
    error_code = 'campaign_canceled',
    error_message = 'the campaign was canceled before this message was sent', updated_at = $2
WHERE message_id IN (
    SELECT message_id FROM message
    WHERE campaign_id = $1 AND billing = 'reserved'
      AND (status = 'queued' OR (status = 'sending' AND due_at = $4))
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING message_id, account_id, cost
