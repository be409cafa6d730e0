-- Moves campaign $1's fan-out checkpoint to $2 and counts $3 more opted-out recipients; a
-- non-null $4 pauses the campaign for that reason (the money or the daily limit ran out).
UPDATE campaign
SET fanned_out = $2, opted_out = opted_out + $3, skipped = skipped + $3,
    status = CASE WHEN $4::TEXT IS NULL THEN status ELSE 'paused' END,
    pause_reason = COALESCE($4, pause_reason),
    updated_at = $5
WHERE campaign_id = $1 AND status = 'running'
