-- Ends a message that was never handed to a provider (failed, expired, canceled) and releases
-- its reservation; returns the account and amount to release. Only under claim ?6 (the
-- fencing token): a stalled worker cannot end a message its new owner is delivering.
UPDATE message
SET status = ?2, billing = 'released', lease_until = 0, claimed_by = NULL, error_code = ?3,
    error_message = ?4, in_doubt_since = NULL, updated_at = MAX(?5, updated_at)
WHERE message_id = ?1 AND status = 'sending' AND claim_seq = ?6 AND billing = 'reserved'
RETURNING account_id, cost, updated_at
