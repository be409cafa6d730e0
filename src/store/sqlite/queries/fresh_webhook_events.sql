-- The events after ?1 up to ?2 that go to an account's enabled webhook and have no delivery
-- row yet (one recorded before a restart has), oldest first, at most ?3, with what
-- claimed_deliveries.sql gives a claimed delivery (no row: no id; attempt 1).
SELECT NULL AS delivery_id, 1 AS attempt, 'webhook' AS target, e.created_at,
       a.webhook_url AS url, a.webhook_secret,
       NULL AS sender_id, NULL AS twilio_callback_signer,
       e.event_seq, e.account_id, e.kind, e.message_id, e.status, e.previous_status, e.at,
       COALESCE(m.channel, i.channel) AS channel,
       COALESCE(m.campaign_id, i.campaign_id) AS campaign_id,
       COALESCE(m.phone_number, i.from_number) AS phone_number,
       m.error_code, m.error_message, m.metadata,
       i.to_number, i.body AS inbound_body, i.media_urls, i.thread_id, i.keyword, i.in_reply_to
FROM event AS e
JOIN account AS a ON a.account_id = e.account_id
LEFT JOIN message AS m ON e.kind = 'message.status' AND m.message_id = e.message_id
LEFT JOIN inbound_message AS i ON e.kind = 'message.inbound' AND i.message_id = e.message_id
WHERE e.event_seq > ?1 AND e.event_seq <= ?2
  AND a.webhook_url IS NOT NULL AND a.webhook_enabled = 1 AND e.event_seq > a.webhook_from_seq
  AND NOT EXISTS (SELECT 1 FROM webhook_delivery AS d
                  WHERE d.event_seq = e.event_seq AND d.target = 'webhook')
ORDER BY e.event_seq LIMIT +?3
