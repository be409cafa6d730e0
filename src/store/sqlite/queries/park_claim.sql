-- Undoes, in the claiming transaction, the claim of message ?1 whose campaign is paused: it
-- goes back to 'queued' (its 'sending' was never committed) and is held (due ?2).
UPDATE message
SET status = 'queued', due_at = ?2, lease_until = 0, claimed_by = NULL,
    attempts = MAX(attempts - 1, 0), updated_at = ?3
WHERE message_id = ?1 AND status = 'sending'
