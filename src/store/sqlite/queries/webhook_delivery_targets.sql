-- Where claimed deliveries (a JSON array of [delivery_id, attempt]) go and how to sign them
-- (a status_callback in Twilio's format with the message's sealed signer, from its sender).
SELECT d.delivery_id, c.value ->> 1 AS attempt, d.target, d.event_seq, d.created_at,
       CASE d.target WHEN 'webhook' THEN a.webhook_url ELSE m.status_callback END AS url,
       a.webhook_secret, m.sender_id, m.twilio_callback_signer
FROM json_each(?1) AS c
JOIN webhook_delivery AS d ON d.delivery_id = c.value ->> 0
JOIN event AS e ON e.event_seq = d.event_seq
JOIN account AS a ON a.account_id = d.account_id
LEFT JOIN message AS m ON d.target = 'status_callback' AND m.message_id = e.message_id
