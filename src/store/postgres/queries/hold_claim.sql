-- Gives back claimed message $1, never sent, because its campaign was paused: it stays
-- 'sending' but is held (due $2), unleased. Only under claim $4.
UPDATE message
SET due_at = $2, lease_until = 0, claimed_by = NULL, attempts = GREATEST(attempts - 1, 0),
    updated_at = $3
WHERE message_id = $1 AND status = 'sending' AND claim_seq = $4
