-- Account $1's messages waiting or being handed over, per priority (the rows the partial
-- index message_ready holds).
SELECT priority, COUNT(*) AS waiting FROM message
WHERE status IN ('queued', 'sending') AND account_id = $1
GROUP BY priority
