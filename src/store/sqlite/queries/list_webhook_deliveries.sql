-- The account's deliveries, newest first, before delivery ?3 (NULL: from the newest), in
-- state ?2 (NULL: any).
SELECT d.delivery_id, d.event_seq, e.kind, e.message_id, d.target, d.state, d.attempts,
       d.due_at, d.created_at, d.finished_at, d.last_attempt_at,
       d.last_latency_ms, d.last_response_status, d.last_error
FROM webhook_delivery AS d JOIN event AS e ON e.event_seq = d.event_seq
WHERE d.account_id = ?1 AND (?2 IS NULL OR d.state = ?2)
  AND (?3 IS NULL OR d.delivery_id < ?3)
ORDER BY d.delivery_id DESC LIMIT +?4
