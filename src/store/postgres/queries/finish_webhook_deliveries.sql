-- Moves deliveries after an attempt that failed, to a retry or to giving up (a success is
-- `mark_webhooks_delivered.sql`); $1 a JSON array of {id, attempt, at, latency, status,
-- error, state, due, finished}. Only under the attempt that claimed it (the fencing token).
UPDATE webhook_delivery
SET state = v.item ->> 'state',
    due_at = COALESCE((v.item ->> 'due')::bigint, webhook_delivery.due_at),
    claimed_until = 0, finished_at = (v.item ->> 'finished')::bigint,
    last_attempt_at = (v.item ->> 'at')::bigint,
    last_latency_ms = (v.item ->> 'latency')::bigint,
    last_response_status = (v.item ->> 'status')::bigint, last_error = v.item ->> 'error'
FROM jsonb_array_elements($1::jsonb) AS v (item)
WHERE webhook_delivery.delivery_id = (v.item ->> 'id')::bigint
  AND webhook_delivery.attempts = (v.item ->> 'attempt')::bigint
  AND webhook_delivery.state = 'pending'
