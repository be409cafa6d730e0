-- Statuses the account's messages reached in the hours from ?3 (the last day) and from ?2
-- (the last 30 days).
SELECT status, SUM(CASE WHEN bucket >= ?3 THEN n ELSE 0 END) AS last_day, SUM(n) AS last_month
FROM status_tally
WHERE account_id = ?1 AND span = 3600000 AND bucket >= ?2
GROUP BY status
