-- Statuses the account's messages reached per minute, from the minute starting at ?2.
SELECT bucket, status, n FROM status_tally
WHERE account_id = ?1 AND span = 60000 AND bucket >= ?2
