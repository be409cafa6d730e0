-- Cancels up to ?3 unsent messages of canceled campaign ?1 (queued, or given back held by a
-- worker) and releases their reservations; returns what to release.
UPDATE message
SET status = 'canceled', billing = 'released', lease_until = 0, claimed_by = NULL,
    error_code = 'campaign_canceled',
    error_message = 'the campaign was canceled before this message was sent', updated_at = ?2
WHERE message_id IN (
    SELECT message_id FROM message
    WHERE campaign_id = ?1 AND status = 'queued'
    UNION ALL
    SELECT message_id FROM message
    WHERE campaign_id = ?1 AND status = 'sending' AND due_at = ?4
    LIMIT +?3
) AND billing = 'reserved'
RETURNING message_id, account_id, cost
