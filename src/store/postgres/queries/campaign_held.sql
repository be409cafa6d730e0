-- Whether campaign $1 has messages held (due at $2, HELD) by a pause: queued or sending, so
-- reserved (the form message_campaign's key has).
SELECT EXISTS (
    SELECT 1 FROM message
    WHERE campaign_id = $1 AND billing = 'reserved' AND due_at = $2
) AS held
