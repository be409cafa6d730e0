-- Inserts accepted messages of account $2, one array per column (UNNEST: one statement and a
-- fixed number of parameters however many rows). $16 is the time of acceptance.
INSERT INTO message (
    message_id, account_id, campaign_id, channel, phone_number, sender_id, body,
    attachment_url, priority, status, segments, cost, billing, due_at, expires_at,
    status_callback, metadata, created_at, updated_at, whatsapp_template, twilio_callback_signer
)
SELECT m.id, $2, m.campaign_id, m.channel, m.phone_number, m.sender_id, m.body,
       m.attachment_url, m.priority, 'queued', m.segments, m.cost, 'reserved', m.due_at,
       m.expires_at, m.status_callback, m.metadata, $16, $16, m.whatsapp_template, m.signer
FROM UNNEST($1::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
            $13::bigint[], $14::text[], $15::text[], $17::text[], $18::text[])
    AS m (id, campaign_id, channel, phone_number, sender_id, body, attachment_url, priority,
          segments, cost, due_at, expires_at, status_callback, metadata, whatsapp_template,
          signer)
