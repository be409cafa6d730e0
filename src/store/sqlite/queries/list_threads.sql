-- The account's (?1) threads, most recent inbound first, before the cursor (?2 ms, ?3 id),
-- at most ?4, each with the last message sent to its number (the latest either way is
-- shown). `message_recipient` finds that message by number.
SELECT t.thread_id, t.channel, t.phone_number, t.last_inbound, t.last_inbound_at,
       t.unread_count,
       o.body AS last_outbound, o.created_at AS last_outbound_at
FROM thread AS t
LEFT JOIN message AS o ON o.message_id = (
    SELECT m.message_id FROM message AS m
    WHERE m.phone_number = t.phone_number AND m.account_id = t.account_id
      AND m.channel = t.channel
    ORDER BY m.created_at DESC LIMIT 1
)
WHERE t.account_id = ?1 AND (?2 IS NULL OR (t.last_inbound_at, t.thread_id) < (?2, ?3))
ORDER BY t.last_inbound_at DESC, t.thread_id DESC
LIMIT +?4
