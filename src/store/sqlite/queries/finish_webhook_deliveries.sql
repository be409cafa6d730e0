-- Moves deliveries on after an attempt: ?1 is a JSON array of {id, attempt, state, due,
-- finished}. Only under the claim that made the attempt (a stalled dispatcher whose claim
-- was taken over writes nothing), and only a pending one.
UPDATE webhook_delivery
SET state = v.value ->> 'state', due_at = COALESCE(v.value ->> 'due', due_at),
    finished_at = v.value ->> 'finished'
FROM json_each(?1) AS v
WHERE webhook_delivery.delivery_id = v.value ->> 'id'
  AND webhook_delivery.attempts = v.value ->> 'attempt' AND webhook_delivery.state = 'pending'
