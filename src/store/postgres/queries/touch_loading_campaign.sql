-- Marks loading campaign $1 as still being written, so it is not mistaken for abandoned.
UPDATE campaign SET updated_at = $2 WHERE campaign_id = $1 AND status = 'loading'
