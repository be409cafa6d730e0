-- Stores one inbound message, unless one with the same provider id is stored already or
-- being stored by another transaction (which this one then waits for): nothing, a repeat.
-- Its thread is attached once it is counted there.
INSERT INTO inbound_message (message_id, account_id, channel, provider, provider_message_id,
    from_number, to_number, body, media_urls, keyword, in_reply_to, campaign_id, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
