-- Stores the inbound messages of the JSON array ?1, in order, but those with a provider id
-- already stored (then nothing: a repeat, and the first of two in the array wins). Answers
-- the ids of those stored. Their threads are attached once they are counted there.
INSERT INTO inbound_message (message_id, account_id, channel, provider, provider_message_id,
    from_number, to_number, body, media_urls, keyword, in_reply_to, campaign_id, received_at)
SELECT r.value ->> 'message_id', r.value ->> 'account_id', r.value ->> 'channel',
       r.value ->> 'provider', r.value ->> 'provider_message_id', r.value ->> 'from',
       r.value ->> 'to', r.value ->> 'body', r.value ->> 'media_urls', r.value ->> 'keyword',
       r.value ->> 'in_reply_to', r.value ->> 'campaign_id', r.value ->> 'received_at'
FROM json_each(?1) AS r WHERE true
ON CONFLICT DO NOTHING
RETURNING message_id
