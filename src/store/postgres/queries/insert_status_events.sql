-- Adds status $2 to the history of messages given as a JSON array $1 of [message_id,
-- account_id, at] (each message once), with a status event for each history row added; a
-- status already recorded keeps its first time and gets no second event. The previous
-- status is the highest-ranked one in the message's history below $2 (queued < sending <
-- sent < delivered < read < every failure); this statement's own rows are all $2, and not
-- seen by its lookups anyway. One statement, so an event's transaction holds its id (from
-- the history insert) before the event's number is handed out (see overview.rs).
WITH input AS MATERIALIZED (
    SELECT e.value ->> 0 AS message_id, e.value ->> 1 AS account_id,
           (e.value ->> 2)::bigint AS at
    FROM jsonb_array_elements($1::jsonb) AS e
),
added AS (
    INSERT INTO message_status_event (message_id, status, at)
    SELECT message_id, $2, at FROM input
    ON CONFLICT (message_id, status) DO NOTHING
    RETURNING message_id
)
INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
SELECT i.account_id, 'message.status', i.message_id, $2,
       (SELECT h.status FROM message_status_event AS h
        WHERE h.message_id = i.message_id
          AND (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
               WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
            < (CASE $2 WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
               WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
        ORDER BY (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                  WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END) DESC
        LIMIT 1),
       i.at, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
FROM added AS a JOIN input AS i ON i.message_id = a.message_id
