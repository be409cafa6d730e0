-- Statuses account $1's messages reached per minute ($2: a minute's span in milliseconds),
-- from the minute starting at $3.
SELECT bucket, status, n FROM status_tally
WHERE account_id = $1 AND span = $2 AND bucket >= $3
