-- Stores accepted messages of account ?1, given as a JSON array of objects in ?2 (one
-- statement for a whole batch). A new message is its own delivery job: `message_ready`
-- picks it up once due_at passes.
INSERT INTO message (
    message_id, account_id, campaign_id, channel, phone_number, sender_id, body,
    attachment_url, priority, status, segments, cost, billing, due_at, expires_at,
    status_callback, metadata, created_at, updated_at
)
SELECT m.value ->> 'id', ?1, m.value ->> 'campaign_id', m.value ->> 'channel',
       m.value ->> 'phone', m.value ->> 'sender_id', m.value ->> 'body',
       m.value ->> 'attachment_url', m.value ->> 'priority', 'queued',
       m.value ->> 'segments', m.value ->> 'cost', 'reserved', m.value ->> 'due_at',
       m.value ->> 'expires_at', m.value ->> 'status_callback', m.value ->> 'metadata',
       ?3, ?3
FROM json_each(?2) AS m
