-- Marks deliveries whose attempt succeeded (nearly every one): $1 is a JSON array of
-- [id, attempt, at, latency, status]. Only under the attempt that claimed it (the fencing
-- token), and only a pending one; no column a success leaves alone.
UPDATE webhook_delivery
SET state = 'delivered', claimed_until = 0, finished_at = v.at, last_attempt_at = v.at,
    last_latency_ms = v.latency, last_response_status = v.status, last_error = NULL
FROM (SELECT (item ->> 0)::bigint AS id, (item ->> 1)::bigint AS attempt,
             (item ->> 2)::bigint AS at, (item ->> 3)::bigint AS latency,
             (item ->> 4)::bigint AS status
      FROM jsonb_array_elements($1::jsonb) AS item) AS v
WHERE webhook_delivery.delivery_id = v.id AND webhook_delivery.attempts = v.attempt
  AND webhook_delivery.state = 'pending'
