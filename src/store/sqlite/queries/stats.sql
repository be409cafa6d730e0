-- Account ?1's messages created since ?2, by UTC day, channel and current status, with the
-- cost of those that were charged.
SELECT strftime('%Y-%m-%d', created_at / 1000, 'unixepoch') AS day, channel, status,
       COUNT(*) AS n,
       SUM(CASE WHEN billing = 'settled' THEN cost ELSE 0 END) AS cost
FROM message
WHERE account_id = ?1 AND created_at >= ?2
GROUP BY day, channel, status
