-- Undoes, in the claiming transaction, the claim of message $1 whose campaign is paused, and
-- holds it (due $2); back to 'queued' only if this claim made it 'sending' (a status never
-- moves back).
UPDATE message
SET status = CASE WHEN EXISTS (
        SELECT 1 FROM message_status_event AS e
        WHERE e.message_id = $1 AND e.status = 'sending'
    ) THEN 'sending' ELSE 'queued' END,
    due_at = $2, lease_until = 0, claimed_by = NULL, attempts = GREATEST(attempts - 1, 0),
    updated_at = $3
WHERE message_id = $1 AND status = 'sending'
