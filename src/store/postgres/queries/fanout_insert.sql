-- Expands the recipients of campaign $1 with seq in ($2, $3] into queued messages of account
-- $4, skipping opted-out numbers. Message ids are made here, not bound one per row: `$5` is
-- the first 20 characters of an id (`msg_`, a ULID's timestamp and 30 random bits) and the
-- last 10 are the Crockford base-32 digits of $11 + the row's position (random 50 bits),
-- so the ids are valid ULIDs, distinct, and ascending in input order. Each new message's
-- history starts with `queued` at $9, and its status event, written by the same statement.
WITH inserted AS (
    INSERT INTO message (
        message_id, account_id, campaign_id, channel, phone_number, sender_id, body,
        attachment_url, priority, status, segments, cost, billing, due_at, expires_at,
        status_callback, metadata, created_at, updated_at
    )
    SELECT $5
           || substr($12, ((n >> 45) & 31)::INT + 1, 1) || substr($12, ((n >> 40) & 31)::INT + 1, 1)
           || substr($12, ((n >> 35) & 31)::INT + 1, 1) || substr($12, ((n >> 30) & 31)::INT + 1, 1)
           || substr($12, ((n >> 25) & 31)::INT + 1, 1) || substr($12, ((n >> 20) & 31)::INT + 1, 1)
           || substr($12, ((n >> 15) & 31)::INT + 1, 1) || substr($12, ((n >> 10) & 31)::INT + 1, 1)
           || substr($12, ((n >> 5) & 31)::INT + 1, 1) || substr($12, (n & 31)::INT + 1, 1),
           $4, $1, $6, r.phone_number, $7, r.body, NULL, $8, 'queued', r.segments,
           r.cost, 'reserved', $9, $10, NULL, NULL, $9, $9
    FROM (
        SELECT phone_number, body, segments, cost,
               $11 + ROW_NUMBER() OVER (ORDER BY seq) - 1 AS n
        FROM campaign_recipient AS c
        WHERE c.campaign_id = $1 AND c.seq > $2 AND c.seq <= $3
          AND NOT EXISTS (SELECT 1 FROM opt_out AS o
                          WHERE o.account_id = $4 AND o.phone_number = c.phone_number)
    ) AS r
    RETURNING message_id
),
history AS (
    INSERT INTO message_status_event (message_id, status, at)
    SELECT message_id, 'queued', $9 FROM inserted
)
INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
SELECT $4, 'message.status', message_id, 'queued', NULL, $9,
       floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
FROM inserted
