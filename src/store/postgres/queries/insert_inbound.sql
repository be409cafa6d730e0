-- Stores the inbound messages of the JSON array $1, in order, but those with a provider id
-- already stored or being stored by another transaction (which this one then waits for):
-- nothing, a repeat; the first of two in the array wins. Answers the ids of those stored.
-- Their threads are attached once they are counted there.
INSERT INTO inbound_message (message_id, account_id, channel, provider, provider_message_id,
    from_number, to_number, body, media_urls, keyword, in_reply_to, campaign_id, received_at)
SELECT r.message_id, r.account_id, r.channel, r.provider, r.provider_message_id, r."from",
       r."to", r.body, r.media_urls, r.keyword, r.in_reply_to, r.campaign_id, r.received_at
FROM jsonb_to_recordset($1::jsonb) AS r (
    message_id TEXT, account_id TEXT, channel TEXT, provider TEXT, provider_message_id TEXT,
    "from" TEXT, "to" TEXT, body TEXT, media_urls TEXT, keyword TEXT, in_reply_to TEXT,
    campaign_id TEXT, received_at BIGINT)
ON CONFLICT DO NOTHING
RETURNING message_id
