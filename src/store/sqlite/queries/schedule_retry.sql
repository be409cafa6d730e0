-- Gives a message back to the queue after a transient failure, due again at ?2, if claim ?6
-- (the fencing token) still holds it. ?7, when not null, binds the message to the provider
-- that may have taken it (no answer came), so no other provider is ever given it. ?8 is the
-- in-doubt mark it keeps: NULL after an attempt whose outcome is known (the provider refused
-- it), the old mark when the provider could not be asked whether an earlier attempt arrived.
UPDATE message
SET due_at = ?2, lease_until = 0, claimed_by = NULL, error_code = ?3, error_message = ?4,
    updated_at = ?5, provider = COALESCE(?7, provider), in_doubt_since = ?8
WHERE message_id = ?1 AND status = 'sending' AND claim_seq = ?6
