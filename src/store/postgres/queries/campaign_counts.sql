-- Campaign $1's messages by current status, with their cost (found by message_campaign; the
-- status is read from the rows, as no index holds it: see the migration
-- receipts_update_in_place).
SELECT status, COUNT(*) AS n, SUM(cost)::BIGINT AS cost
FROM message WHERE campaign_id = $1
GROUP BY status
