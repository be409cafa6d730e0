-- Moves campaign $1 of account $2 to status $3 (pause reason $4) if it is in one of the
-- states in array $5; a move the lifecycle forbids matches no row.
UPDATE campaign
SET status = $3, pause_reason = $4,
    started_at = CASE WHEN $3 = 'running' THEN COALESCE(started_at, $6) ELSE started_at END,
    finished_at = CASE WHEN $3 IN ('completed', 'canceled') THEN $6 ELSE finished_at END,
    updated_at = $6
WHERE campaign_id = $1 AND account_id = $2 AND status = ANY($5)
