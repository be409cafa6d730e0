-- Moves messages of provider $1 to status $2 from receipts; $3 is a JSON array of objects
-- {ref, at, code, message}; $4 a JSON array of the statuses allowed to move to $2. The event
-- time never precedes the message's last change, so its history stays in order. Each message
-- moved gets its history row and status event, as insert_status_events.sql writes them (the
-- previous status is the highest-ranked one below $2 in its history), in this one statement;
-- the event where the history did not hold $2 yet, as in claim_lane.sql.
-- A message is found by its provider id once (message_provider_ref), not found and then
-- looked up again by its id.
WITH moved AS (
    UPDATE message
    SET status = $2,
        error_code = COALESCE(v.value ->> 'code', message.error_code),
        error_message = COALESCE(v.value ->> 'message', message.error_message),
        updated_at = GREATEST((v.value ->> 'at')::bigint, message.updated_at)
    FROM jsonb_array_elements($3::jsonb) AS v
    WHERE message.provider = $1 AND message.provider_message_id = v.value ->> 'ref'
      AND message.status IN (SELECT jsonb_array_elements_text($4::jsonb))
    RETURNING message.message_id, message.account_id, message.provider_message_id,
              message.updated_at
),
added AS (
    INSERT INTO message_status_event (message_id, status, at)
    SELECT message_id, $2, updated_at FROM moved
    ON CONFLICT (message_id, status) DO NOTHING
),
evented AS (
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT m.account_id, 'message.status', m.message_id, $2,
           (SELECT h.status FROM message_status_event AS h
            WHERE h.message_id = m.message_id
              AND (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
                < (CASE $2 WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
            ORDER BY (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                      WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END) DESC
            LIMIT 1),
           m.updated_at, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
    FROM moved AS m
    WHERE NOT EXISTS (
        SELECT 1 FROM message_status_event AS h
        WHERE h.message_id = m.message_id AND h.status = $2)
)
SELECT * FROM moved
