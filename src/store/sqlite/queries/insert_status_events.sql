-- Adds status ?2 at time ?3 to the history of each message id in the JSON array ?1. A status
-- already in a message's history keeps its first time: each status appears at most once.
INSERT INTO message_status_event (message_id, status, at)
SELECT e.value, ?2, ?3 FROM json_each(?1) AS e WHERE true
ON CONFLICT (message_id, status) DO NOTHING
