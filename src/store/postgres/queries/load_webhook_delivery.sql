-- One delivery of account $1, with its event's type and message.
SELECT d.delivery_id, d.event_seq, e.kind, e.message_id, d.target, d.state, d.attempts,
       d.due_at, d.created_at, d.finished_at, d.last_attempt_at,
       d.last_latency_ms, d.last_response_status, d.last_error
FROM webhook_delivery AS d JOIN event AS e ON e.event_seq = d.event_seq
WHERE d.account_id = $1 AND d.delivery_id = $2
