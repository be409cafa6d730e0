-- Adds status ?2 to the history of messages given as a JSON array ?1 of [message_id,
-- account_id, at]; a status already recorded keeps its first time. Run right after
-- insert_message_events.sql with the same arguments, which writes their events.
INSERT INTO message_status_event (message_id, status, at)
SELECT e.value ->> 0, ?2, e.value ->> 2 FROM json_each(?1) AS e WHERE true
ON CONFLICT (message_id, status) DO NOTHING
