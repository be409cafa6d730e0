-- Where each claimed delivery goes; $1 a JSON array of [delivery_id, attempt].
SELECT d.delivery_id, (c.item ->> 1)::bigint AS attempt, d.target, d.event_seq, d.created_at,
       CASE d.target WHEN 'webhook' THEN a.webhook_url ELSE m.status_callback END AS url,
       a.webhook_secret, m.sender_id, m.twilio_callback_signer
FROM jsonb_array_elements($1::jsonb) AS c (item)
JOIN webhook_delivery AS d ON d.delivery_id = (c.item ->> 0)::bigint
JOIN event AS e ON e.event_seq = d.event_seq
JOIN account AS a ON a.account_id = d.account_id
LEFT JOIN message AS m ON d.target = 'status_callback' AND m.message_id = e.message_id
