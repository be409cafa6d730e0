-- Hands a claimed, untouched message back to the queue (worker shutting down), if claim ?3
-- (the fencing token) still holds it.
UPDATE message
SET lease_until = 0, claimed_by = NULL, attempts = MAX(attempts - 1, 0), updated_at = ?2
WHERE message_id = ?1 AND status = 'sending' AND claim_seq = ?3
