-- Whether campaign $1 has messages held (due at $2, HELD) by a pause.
SELECT EXISTS (
    SELECT 1 FROM message
    WHERE campaign_id = $1 AND status IN ('queued', 'sending') AND due_at = $2
) AS held
