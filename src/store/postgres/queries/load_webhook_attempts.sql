-- A delivery's attempts, in order.
SELECT attempt, at, latency_ms, response_status, error
FROM webhook_attempt WHERE delivery_id = $1 ORDER BY attempt
