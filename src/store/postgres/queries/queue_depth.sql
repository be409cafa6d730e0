-- Messages waiting for delivery per priority (served by the partial index message_ready).
SELECT priority, COUNT(*) AS waiting FROM message
WHERE status IN ('queued', 'sending') GROUP BY priority
