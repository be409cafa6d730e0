-- The claimed deliveries (a JSON array of [delivery_id, attempt]), each with where it goes,
-- how to sign it (a status_callback in Twilio's format with the message's sealed signer,
-- from its sender) and its event as the payload shows it (the columns of event_select.sql).
-- One read: each event and its message are looked up once for both.
SELECT d.delivery_id, c.value ->> 1 AS attempt, d.target, d.created_at,
       CASE d.target WHEN 'webhook' THEN a.webhook_url ELSE m.status_callback END AS url,
       a.webhook_secret,
       CASE d.target WHEN 'status_callback' THEN m.sender_id END AS sender_id,
       CASE d.target WHEN 'status_callback' THEN m.twilio_callback_signer END
           AS twilio_callback_signer,
       e.event_seq, e.account_id, e.kind, e.message_id, e.status, e.previous_status, e.at,
       COALESCE(m.channel, i.channel) AS channel,
       COALESCE(m.campaign_id, i.campaign_id) AS campaign_id,
       COALESCE(m.phone_number, i.from_number) AS phone_number,
       m.error_code, m.error_message, m.metadata,
       i.to_number, i.body AS inbound_body, i.media_urls, i.thread_id, i.keyword, i.in_reply_to
FROM json_each(?1) AS c
JOIN webhook_delivery AS d ON d.delivery_id = c.value ->> 0
JOIN event AS e ON e.event_seq = d.event_seq
JOIN account AS a ON a.account_id = d.account_id
LEFT JOIN message AS m ON e.kind = 'message.status' AND m.message_id = e.message_id
LEFT JOIN inbound_message AS i ON e.kind = 'message.inbound' AND i.message_id = e.message_id
