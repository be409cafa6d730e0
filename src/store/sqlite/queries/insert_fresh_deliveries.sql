-- The rows of deliveries made from the event log (`fresh_webhook_events.sql`): ?1 is a JSON
-- array of [event_seq, account, created_at, state, attempts, due, finished, at, latency,
-- status, error], one per event: delivered at the first attempt (nearly every one), failed
-- and retried or given up, or not tried yet (its account's endpoint was full). An event that
-- has its row already (posted again after a restart) keeps it.
INSERT INTO webhook_delivery (event_seq, account_id, target, state, attempts, due_at,
                              created_at, finished_at, last_attempt_at, last_latency_ms,
                              last_response_status, last_error)
SELECT v.value ->> 0, v.value ->> 1, 'webhook', v.value ->> 3, v.value ->> 4, v.value ->> 5,
       v.value ->> 2, v.value ->> 6, v.value ->> 7, v.value ->> 8, v.value ->> 9, v.value ->> 10
FROM json_each(?1) AS v WHERE true
ON CONFLICT (event_seq) WHERE target = 'webhook' DO NOTHING
RETURNING delivery_id, event_seq
