-- The status of campaign $1 (for workers deciding whether its messages may go).
SELECT status FROM campaign WHERE campaign_id = $1
