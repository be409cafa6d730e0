-- Hands a claimed, untouched message back to the queue if claim $3 still holds it.
UPDATE message
SET lease_until = 0, claimed_by = NULL, attempts = GREATEST(attempts - 1, 0), updated_at = $2
WHERE message_id = $1 AND status = 'sending' AND claim_seq = $3
