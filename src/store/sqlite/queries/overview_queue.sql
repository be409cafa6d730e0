-- The account's messages waiting or being handed over, per priority (from the partial index
-- message_ready, which holds only the backlog).
SELECT priority, COUNT(*) AS waiting FROM message INDEXED BY message_ready
WHERE status IN ('queued', 'sending') AND account_id = ?1
GROUP BY priority
