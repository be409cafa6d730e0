-- Makes up to ?4 held messages of resumed campaign ?1 (due at ?2, HELD) due at ?3.
UPDATE message SET due_at = ?3
WHERE message_id IN (
    SELECT message_id FROM message
    WHERE campaign_id = ?1 AND status IN ('queued', 'sending') AND due_at = ?2
    LIMIT +?4
)
