-- An event with what its payload shows: the message's details for a status, the inbound
-- message's for an inbound one (as SQLite's event_select.sql). The caller appends the WHERE
-- clause.
SELECT e.event_seq, e.account_id, e.kind, e.message_id, e.status, e.previous_status, e.at,
       COALESCE(m.channel, i.channel) AS channel,
       COALESCE(m.campaign_id, i.campaign_id) AS campaign_id,
       COALESCE(m.phone_number, i.from_number) AS phone_number,
       m.error_code, m.error_message, m.metadata,
       i.to_number, i.body AS inbound_body, i.media_urls, i.thread_id, i.keyword, i.in_reply_to
FROM event AS e
LEFT JOIN message AS m ON e.kind = 'message.status' AND m.message_id = e.message_id
LEFT JOIN inbound_message AS i ON e.kind = 'message.inbound' AND i.message_id = e.message_id
