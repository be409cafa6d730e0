-- Ends a message that was never handed to a provider (failed, expired, canceled) and releases
-- its reservation; returns the account and amount to release.
UPDATE message
SET status = ?2, billing = 'released', lease_until = 0, claimed_by = NULL, error_code = ?3,
    error_message = ?4, updated_at = ?5
WHERE message_id = ?1 AND status IN ('queued', 'sending') AND billing = 'reserved'
RETURNING account_id, cost
