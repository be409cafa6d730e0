-- Campaigns the workers have work for: waiting to start or running.
SELECT campaign_id, status, scheduled_at, fanned_out, last_seq
FROM campaign WHERE status IN ('scheduled', 'running')
ORDER BY created_at
