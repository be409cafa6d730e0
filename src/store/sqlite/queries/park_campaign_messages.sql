-- Holds up to ?3 queued messages of paused campaign ?1: due at ?2 (HELD), never claimed.
UPDATE message SET due_at = ?2
WHERE message_id IN (
    SELECT message_id FROM message
    WHERE campaign_id = ?1 AND status = 'queued' AND due_at < ?2
    LIMIT +?3
)
