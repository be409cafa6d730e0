-- Records failed attempts: ?1 is a JSON array of {id, attempt, at, latency, status, error}.
-- (An attempt that succeeded is the delivery's last and stays on its row.)
INSERT INTO webhook_attempt (delivery_id, attempt, at, latency_ms, response_status, error)
SELECT v.value ->> 'id', v.value ->> 'attempt', v.value ->> 'at', v.value ->> 'latency',
       v.value ->> 'status', v.value ->> 'error'
FROM json_each(?1) AS v WHERE true
ON CONFLICT (delivery_id, attempt) DO NOTHING
