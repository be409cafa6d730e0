-- Campaign $1's messages by current status, with their cost (served by message_campaign).
SELECT status, COUNT(*) AS n, SUM(cost)::BIGINT AS cost
FROM message WHERE campaign_id = $1
GROUP BY status
