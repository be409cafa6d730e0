-- Moves messages of provider $1 to status $2 from receipts; $3 is a JSON array of objects
-- {ref, at, code, message}; $4 a JSON array of the statuses allowed to move to $2. The event
-- time never precedes the message's last change, so its history stays in order. Each message
-- moved gets its history row and status event in this one statement: the event where the
-- history did not hold $2 yet, as in claim_lane.sql.
-- The previous status is the one the message had just before this move: the highest in its
-- history, since a status never moves back. It is read from the row itself, locked (the lock
-- the update takes anyway), not from the history: when another process moves the same
-- message at the same moment (its `delivered` while this is its `read`), this statement
-- waits for that one's commit and then works on the row as that one left it, while every
-- read of the history in it still sees the history from before (the statement's snapshot):
-- the `read` event named `sent` as its previous status, with `delivered` before it in the
-- history.
-- The allowed statuses are an array computed once (`= ANY (ARRAY(…))`), not a subquery
-- joined to the row (`IN (SELECT …)`): when PostgreSQL re-checks a row another transaction
-- changed meanwhile, it keeps the joined rows as they were, so a join on the status matched
-- only the status the row had before. The `read` that waited for a `delivered` then moved
-- nothing, and was dropped as stale: the message stayed `delivered`.
-- The references are an array too, so the lookup is always by both columns of
-- message_provider_ref (a subquery there let some plans walk every message of the provider).
WITH current AS (
    SELECT m.message_id, m.status AS previous
    FROM message AS m
    WHERE m.provider = $1
      AND m.provider_message_id = ANY (ARRAY(
          SELECT v.value ->> 'ref' FROM jsonb_array_elements($3::jsonb) AS v))
      AND m.status = ANY (ARRAY(SELECT jsonb_array_elements_text($4::jsonb)))
    FOR NO KEY UPDATE OF m
),
moved AS (
    UPDATE message
    SET status = $2,
        error_code = COALESCE(v.value ->> 'code', message.error_code),
        error_message = COALESCE(v.value ->> 'message', message.error_message),
        updated_at = GREATEST((v.value ->> 'at')::bigint, message.updated_at)
    FROM current AS c, jsonb_array_elements($3::jsonb) AS v
    WHERE message.message_id = c.message_id
      AND message.provider_message_id = v.value ->> 'ref'
      AND message.status = ANY (ARRAY(SELECT jsonb_array_elements_text($4::jsonb)))
    RETURNING message.message_id, message.account_id, message.provider_message_id,
              message.updated_at, c.previous
),
added AS (
    INSERT INTO message_status_event (message_id, status, at)
    SELECT message_id, $2, updated_at FROM moved
    ON CONFLICT (message_id, status) DO NOTHING
),
evented AS (
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT m.account_id, 'message.status', m.message_id, $2,
           m.previous,
           m.updated_at, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
    FROM moved AS m
    WHERE NOT EXISTS (
        SELECT 1 FROM message_status_event AS h
        WHERE h.message_id = m.message_id AND h.status = $2)
)
SELECT message_id, account_id, provider_message_id, updated_at FROM moved
