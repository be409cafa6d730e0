-- Forgets worker processes silent since before $1 that hold no claims any more.
DELETE FROM worker_instance WHERE heartbeat_at < $1
  AND NOT EXISTS (
      SELECT 1 FROM message WHERE status = 'sending' AND claimed_by = worker_instance.instance_id
  )
