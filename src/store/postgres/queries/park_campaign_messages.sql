-- Holds up to $3 queued messages of paused campaign $1: due at $2 (HELD), never claimed.
-- Rows a claim holds are skipped: the workers' campaign gate stops those. (`reserved` lets
-- message_campaign, keyed by billing, narrow the search.)
UPDATE message SET due_at = $2
WHERE message_id IN (
    SELECT message_id FROM message
    WHERE campaign_id = $1 AND billing = 'reserved' AND status = 'queued' AND due_at < $2
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
