-- Marks messages sent and settles their cost, in one statement that needs no transaction
-- around it; $1 is a JSON array of objects {id, claim, provider, ref, at}, $2 the time of
-- the settlement and $3 its day. Only a message still being delivered under that claim
-- moves. Each message moved gets its `sent` history row and status event, as
-- insert_status_events.sql writes them (the previous status is the highest below `sent`
-- the history holds), and each account whose messages moved is settled as the SQLite
-- statements settle_balance, record_charge and count_sent do: the reservation becomes a
-- debit, the ledger gets its charge line and day $3's sent count grows.
-- It first takes the receipt hand-over guard shared (lock_receipt_hand_over.sql): the held
-- receipts the caller takes next, in a later statement and so a later snapshot, include
-- every receipt held before the guard was granted, and a receipt held after it looks again
-- and finds these messages sent. (`EXISTS (SELECT 1 FROM guard)` is evaluated once, before
-- the first row is looked at.) An event is written where the history did not hold `sent`
-- yet, as in claim_lane.sql.
-- The settlement's parts each read the one before's RETURNING, so they run in this order:
-- message rows, then account rows in id order (`locked`), then usage rows, as every other
-- writer takes them, so two settlements (or a settlement and an accept) cannot deadlock.
-- (Statements in a WITH that do not read each other run in no set order.)
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
    RETURNING message.message_id, message.account_id, message.cost, message.updated_at
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
),
owed AS (
    SELECT account_id, sum(cost)::bigint AS charged, count(*)::bigint AS messages
    FROM sent GROUP BY account_id
),
locked AS (
    SELECT a.account_id FROM account AS a
    WHERE a.account_id IN (SELECT account_id FROM owed)
    ORDER BY a.account_id
    FOR UPDATE
),
charged AS (
    UPDATE account
    SET balance = balance - o.charged, reserved = reserved - o.charged, updated_at = $2
    FROM owed AS o JOIN locked AS l ON l.account_id = o.account_id
    WHERE account.account_id = o.account_id
    RETURNING account.account_id, o.charged, o.messages
),
counted AS (
    INSERT INTO account_usage (account_id, day, accepted, sent)
    SELECT account_id, $3, 0, messages FROM charged ORDER BY account_id
    ON CONFLICT (account_id, day) DO UPDATE SET sent = account_usage.sent + excluded.sent
    RETURNING account_id
),
ledger AS (
    INSERT INTO balance_entry (account_id, kind, amount, messages, created_at)
    SELECT c.account_id, 'charge', -c.charged, c.messages, $2::bigint
    FROM charged AS c JOIN counted AS u ON u.account_id = c.account_id
)
SELECT count(*) AS moved FROM sent
