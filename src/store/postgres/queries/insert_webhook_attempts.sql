-- Records failed attempts, $1 a JSON array of {id, attempt, at, latency, status, error}.
INSERT INTO webhook_attempt (delivery_id, attempt, at, latency_ms, response_status, error)
SELECT (v.item ->> 'id')::bigint, (v.item ->> 'attempt')::bigint, (v.item ->> 'at')::bigint,
       (v.item ->> 'latency')::bigint, (v.item ->> 'status')::bigint, v.item ->> 'error'
FROM jsonb_array_elements($1::jsonb) AS v (item)
ON CONFLICT (delivery_id, attempt) DO NOTHING
