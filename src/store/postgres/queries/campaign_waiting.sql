-- Whether any message of campaign $1 still waits for delivery (queued or sending: reserved,
-- the form message_campaign's key has).
SELECT EXISTS (
    SELECT 1 FROM message WHERE campaign_id = $1 AND billing = 'reserved'
) AS waiting
