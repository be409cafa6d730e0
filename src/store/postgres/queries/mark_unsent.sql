-- Ends a message never handed to a provider (failed, expired, canceled) under claim $6 and
-- releases its reservation; returns the account and amount to release.
UPDATE message
SET status = $2, billing = 'released', lease_until = 0, claimed_by = NULL, error_code = $3,
    error_message = $4, in_doubt_since = NULL, updated_at = GREATEST($5, updated_at)
WHERE message_id = $1 AND status = 'sending' AND claim_seq = $6 AND billing = 'reserved'
RETURNING account_id, cost, updated_at
