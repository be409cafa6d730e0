-- Adds status $2 at time $3 to the history of each message id in the JSON array $1; a status
-- already in a message's history keeps its first time.
INSERT INTO message_status_event (message_id, status, at)
SELECT e.id, $2, $3 FROM jsonb_array_elements_text($1::jsonb) AS e (id)
ON CONFLICT (message_id, status) DO NOTHING
