-- Gives a message back to the queue after a transient failure, due again at $2, if claim $6
-- (the fencing token) still holds it; $7 binds it to a provider that may have taken it, $8 is
-- the in-doubt mark it keeps.
UPDATE message
SET due_at = $2, lease_until = 0, claimed_by = NULL, error_code = $3, error_message = $4,
    updated_at = $5, provider = COALESCE($7, provider), in_doubt_since = $8
WHERE message_id = $1 AND status = 'sending' AND claim_seq = $6
