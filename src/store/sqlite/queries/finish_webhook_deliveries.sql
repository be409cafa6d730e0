-- Moves deliveries on after an attempt that failed, to a retry or to giving up (a success is
-- `mark_webhooks_delivered.sql`): ?1 is a JSON array of {id, attempt, state, due, finished,
-- at, latency, status, error}. Only under the claim that made the attempt (a stalled
-- dispatcher whose claim was taken over writes nothing), and only a pending one.
UPDATE webhook_delivery
SET state = v.value ->> 'state', due_at = COALESCE(v.value ->> 'due', due_at),
    claimed_until = 0, finished_at = v.value ->> 'finished',
    last_attempt_at = v.value ->> 'at', last_latency_ms = v.value ->> 'latency',
    last_response_status = v.value ->> 'status', last_error = v.value ->> 'error'
FROM json_each(?1) AS v
WHERE webhook_delivery.delivery_id = v.value ->> 'id'
  AND webhook_delivery.attempts = v.value ->> 'attempt' AND webhook_delivery.state = 'pending'
