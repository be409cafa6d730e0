-- Starts the scheduled campaigns whose time $1 has come.
UPDATE campaign SET status = 'running', started_at = $1, updated_at = $1
WHERE status = 'scheduled' AND scheduled_at <= $1
