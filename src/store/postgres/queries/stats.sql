-- Account $1's messages created since $2, by UTC day, channel and current status, with the
-- cost of those that were charged.
SELECT to_char(to_timestamp(created_at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
       channel, status, COUNT(*) AS n,
       SUM(CASE WHEN billing = 'settled' THEN cost ELSE 0 END)::BIGINT AS cost
FROM message
WHERE account_id = $1 AND created_at >= $2
GROUP BY 1, channel, status
