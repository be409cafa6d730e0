-- Makes loading campaign $1 visible in status $2 with its list's totals.
UPDATE campaign
SET status = $2, recipients_total = $3, recipients_accepted = $4, rejected = $5,
    opted_out = $6, estimated_cost = $7, estimated_segments = $8, last_seq = $9,
    started_at = CASE WHEN $2 = 'running' THEN $10::BIGINT END, updated_at = $10
WHERE campaign_id = $1 AND status = 'loading'
