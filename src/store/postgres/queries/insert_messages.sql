-- Writes what one batch of accepts added up to for account $2, in one statement: inserts its
-- accepted messages, one array per column (UNNEST: a fixed number of parameters however many
-- rows; none when a campaign's fan-out inserted its own), with each one's `queued` history
-- row and status event at $16, the time of acceptance; then reserves $20 of the account's
-- balance and counts $21 messages accepted on day $19. So an accept's transaction is BEGIN,
-- the account's figures (which lock its row), this statement and COMMIT.
-- The event insert reads the message insert's RETURNING, so the transaction holds its id
-- before an event's number is handed out (overview.rs). The account row is already locked,
-- so the order in which PostgreSQL runs the parts cannot invert account-then-usage.
WITH inserted AS (
    INSERT INTO message (
        message_id, account_id, campaign_id, channel, phone_number, sender_id, body,
        attachment_url, priority, status, segments, cost, billing, due_at, expires_at,
        status_callback, metadata, created_at, updated_at, whatsapp_template,
        twilio_callback_signer
    )
    SELECT m.id, $2, m.campaign_id, m.channel, m.phone_number, m.sender_id, m.body,
           m.attachment_url, m.priority, 'queued', m.segments, m.cost, 'reserved', m.due_at,
           m.expires_at, m.status_callback, m.metadata, $16, $16, m.whatsapp_template, m.signer
    FROM UNNEST($1::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                $13::bigint[], $14::text[], $15::text[], $17::text[], $18::text[])
        AS m (id, campaign_id, channel, phone_number, sender_id, body, attachment_url,
              priority, segments, cost, due_at, expires_at, status_callback, metadata,
              whatsapp_template, signer)
    RETURNING message_id
),
history AS (
    INSERT INTO message_status_event (message_id, status, at)
    SELECT message_id, 'queued', $16::bigint FROM inserted
),
evented AS (
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT $2, 'message.status', message_id, 'queued', NULL, $16::bigint,
           floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
    FROM inserted
),
reserved AS (
    UPDATE account SET reserved = reserved + $20::bigint, updated_at = $16::bigint
    WHERE account_id = $2
    RETURNING account_id
)
INSERT INTO account_usage (account_id, day, accepted, sent)
SELECT account_id, $19::text, $21::bigint, 0 FROM reserved
ON CONFLICT (account_id, day) DO UPDATE SET accepted = account_usage.accepted + excluded.accepted
