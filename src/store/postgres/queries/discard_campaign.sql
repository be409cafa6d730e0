-- Deletes a campaign that never finished loading (upload failed, or its process died).
DELETE FROM campaign WHERE campaign_id = $1 AND status = 'loading'
