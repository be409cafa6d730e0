-- Stores one inbound message.
INSERT INTO inbound_message (message_id, account_id, thread_id, channel, provider,
    provider_message_id, from_number, to_number, body, media_urls, keyword, in_reply_to,
    campaign_id, received_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
