-- Marks deliveries whose attempt succeeded (nearly every one): ?1 is a JSON array of
-- [id, attempt, at, latency, status]. Only under the claim that made the attempt, and only a
-- pending one. Arrays, not objects, and no column a success leaves alone: this runs for
-- every event an endpoint takes, and each field read from an object costs a lookup by name.
UPDATE webhook_delivery
SET state = 'delivered', claimed_until = 0, finished_at = v.value ->> 2,
    last_attempt_at = v.value ->> 2, last_latency_ms = v.value ->> 3,
    last_response_status = v.value ->> 4, last_error = NULL
FROM json_each(?1) AS v
WHERE webhook_delivery.delivery_id = v.value ->> 0
  AND webhook_delivery.attempts = v.value ->> 1 AND webhook_delivery.state = 'pending'
