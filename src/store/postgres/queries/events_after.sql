-- The events numbered after $1 up to the settled horizon $2, of account $3 (or of all when
-- NULL), oldest first, at most $4, with what their payloads show (as SQLite's
-- event_select.sql).
SELECT e.event_seq, e.account_id, e.kind, e.message_id, e.status, e.previous_status, e.at,
       COALESCE(m.channel, i.channel) AS channel,
       COALESCE(m.campaign_id, i.campaign_id) AS campaign_id,
       COALESCE(m.phone_number, i.from_number) AS phone_number,
       m.error_code, m.error_message, m.metadata,
       i.to_number, i.body AS inbound_body, i.media_urls, i.thread_id, i.keyword, i.in_reply_to
FROM event AS e
LEFT JOIN message AS m ON e.kind = 'message.status' AND m.message_id = e.message_id
LEFT JOIN inbound_message AS i ON e.kind = 'message.inbound' AND i.message_id = e.message_id
WHERE e.event_seq > $1 AND e.event_seq <= $2 AND ($3::text IS NULL OR e.account_id = $3)
ORDER BY e.event_seq
LIMIT $4
