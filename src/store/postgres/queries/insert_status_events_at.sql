-- Adds status $2 to the history of messages given as a JSON array $1 of [message_id, at]
-- pairs; a status already recorded keeps its first time.
INSERT INTO message_status_event (message_id, status, at)
SELECT e.value ->> 0, $2, (e.value ->> 1)::bigint FROM jsonb_array_elements($1::jsonb) AS e
ON CONFLICT (message_id, status) DO NOTHING
