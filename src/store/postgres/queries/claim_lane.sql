-- Claims up to $5 due messages of priority $4 for worker $2 until $1 (the lease), oldest due
-- first, as SQLite's claim_lane.sql does. SKIP LOCKED: workers in other processes claiming
-- at the same moment take other rows instead of waiting for these, and never the same ones.
-- Each claim bumps `claim_seq`, the fencing token; taking over a run-out lease marks the
-- attempt in doubt since that claim. (SET expressions read the row as it was.) The claim's
-- time never precedes the message's last change: `now` ($3) was read before this statement,
-- and an accept that read a later clock may have committed in between; its `queued` must
-- not come after this `sending` in the history's times.
-- `billing = 'reserved'` is the queue (queued or sending), as the partial index message_ready
-- selects it.
--
-- A claimed message that nothing can take out of the claim (no campaign of Herald's that
-- could be paused or canceled, and no opt-out of its number since it was accepted: what
-- store::delivery::screen looks for) gets its `sending` history row and status event here,
-- as insert_status_events.sql writes them, and comes back `recorded`. So the usual claim is
-- this statement and the lane probe, with no transaction around them (store/postgres/mod.rs);
-- the others are screened and recorded by the caller in a transaction of their own.
-- An event is written where the history did not hold `sending` yet: the history row `added`
-- writes, as every part of the statement sees the history as it was when the statement
-- began. (Joining `added` to `claimed` instead made PostgreSQL, which guesses one row for
-- each, compare every pair: 65,000 comparisons for a claim of 256.)
WITH claimed AS (
    UPDATE message
    SET status = 'sending', attempts = message.attempts + 1, lease_until = $1,
        claimed_by = $2, claim_seq = message.claim_seq + 1,
        in_doubt_since = CASE WHEN message.status = 'sending' AND message.lease_until > 0
            THEN COALESCE(message.in_doubt_since, message.updated_at)
            ELSE message.in_doubt_since END,
        updated_at = GREATEST($3, message.updated_at)
    FROM (
        SELECT message_id FROM message
        WHERE billing = 'reserved' AND priority = $4 AND due_at <= $3
          AND lease_until <= $3
        ORDER BY due_at
        LIMIT $5
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE message.message_id = due.message_id
    RETURNING message.message_id, message.account_id, message.campaign_id, message.channel,
              message.phone_number, message.sender_id, message.body, message.attachment_url,
              message.priority, message.attempts, message.expires_at, message.cost,
              message.claim_seq, message.provider, message.in_doubt_since,
              message.whatsapp_template, message.updated_at,
              (message.campaign_id IS NULL OR NOT starts_with(message.campaign_id, 'cmp_'))
              AND NOT EXISTS (
                  SELECT 1 FROM opt_out AS o
                  WHERE o.account_id = message.account_id
                    AND o.phone_number = message.phone_number
                    AND o.created_at > message.created_at) AS recorded
),
added AS (
    INSERT INTO message_status_event (message_id, status, at)
    SELECT message_id, 'sending', updated_at FROM claimed WHERE recorded
    ON CONFLICT (message_id, status) DO NOTHING
),
evented AS (
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT c.account_id, 'message.status', c.message_id, 'sending',
           (SELECT h.status FROM message_status_event AS h
            WHERE h.message_id = c.message_id AND h.status = 'queued'),
           c.updated_at, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
    FROM claimed AS c
    WHERE c.recorded AND NOT EXISTS (
        SELECT 1 FROM message_status_event AS h
        WHERE h.message_id = c.message_id AND h.status = 'sending')
)
SELECT * FROM claimed
