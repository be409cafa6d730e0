-- Statuses account $1's messages reached in the hours ($2: an hour's span in milliseconds)
-- from $4 (the last day) and from $3 (the last 30 days).
SELECT status, SUM(CASE WHEN bucket >= $4 THEN n ELSE 0 END)::bigint AS last_day,
       SUM(n)::bigint AS last_month
FROM status_tally
WHERE account_id = $1 AND span = $2 AND bucket >= $3
GROUP BY status
