-- Marks messages sent and settles their cost; $1 is a JSON array of objects {id, claim,
-- provider, ref, at}. Only a message still being delivered under that claim moves. Each
-- message moved gets its `sent` history row and status event, as insert_status_events.sql
-- writes them (the previous status is the highest below `sent` the history holds), in this
-- one statement rather than a second one per batch.
-- It first takes the receipt hand-over guard shared (lock_receipt_hand_over.sql), which the
-- caller would otherwise take in a statement of its own right after this one: the held
-- receipts it takes next, in a later statement and so a later snapshot, include every
-- receipt held before the guard was granted, and a receipt held after it looks again and
-- finds these messages sent. (`EXISTS (SELECT 1 FROM guard)` is evaluated once, before the
-- first row is looked at.) An event is written where the history did not hold `sent` yet,
-- as in claim_lane.sql.
WITH guard AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(7271001)::text AS held
),
sent AS (
    UPDATE message
    SET status = 'sent', billing = 'settled', provider = v.value ->> 'provider',
        provider_message_id = v.value ->> 'ref', lease_until = 0, claimed_by = NULL,
        error_code = NULL, error_message = NULL, in_doubt_since = NULL,
        updated_at = GREATEST((v.value ->> 'at')::bigint, message.updated_at)
    FROM jsonb_array_elements($1::jsonb) AS v
    WHERE message.message_id = v.value ->> 'id' AND message.status = 'sending'
      AND message.claim_seq = (v.value ->> 'claim')::bigint
      AND EXISTS (SELECT 1 FROM guard)
    RETURNING message.message_id, message.account_id, message.cost,
              message.provider_message_id, message.updated_at
),
added AS (
    INSERT INTO message_status_event (message_id, status, at)
    SELECT message_id, 'sent', updated_at FROM sent
    ON CONFLICT (message_id, status) DO NOTHING
),
evented AS (
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT s.account_id, 'message.status', s.message_id, 'sent',
           COALESCE(
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = s.message_id AND h.status = 'sending'),
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = s.message_id AND h.status = 'queued')),
           s.updated_at, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
    FROM sent AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM message_status_event AS h
        WHERE h.message_id = s.message_id AND h.status = 'sent')
)
SELECT * FROM sent
