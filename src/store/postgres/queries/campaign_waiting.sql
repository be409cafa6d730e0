-- Whether any message of campaign $1 still waits for delivery (queued or sending).
SELECT EXISTS (
    SELECT 1 FROM message WHERE campaign_id = $1 AND status IN ('queued', 'sending')
) AS waiting
