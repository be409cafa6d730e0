-- Deletes the rejections of a campaign that never finished loading.
DELETE FROM campaign_rejection WHERE campaign_id = $1
  AND EXISTS (SELECT 1 FROM campaign WHERE campaign_id = $1 AND status = 'loading')
