-- Completes running campaign $1 once every recipient is expanded and none of its messages
-- waits for delivery any more (queued or sending: reserved).
UPDATE campaign SET status = 'completed', finished_at = $2, updated_at = $2
WHERE campaign_id = $1 AND status = 'running' AND fanned_out >= last_seq
  AND NOT EXISTS (
      SELECT 1 FROM message
      WHERE campaign_id = $1 AND billing = 'reserved'
  )
