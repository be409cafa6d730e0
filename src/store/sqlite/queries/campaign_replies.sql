-- Replies to campaign ?1 of account ?2, oldest first, after the cursor (?3 ms, ?4 id), at
-- most ?5.
SELECT message_id, thread_id, from_number, body, keyword, in_reply_to, received_at
FROM inbound_message
WHERE campaign_id = ?1 AND account_id = ?2
  AND (?3 IS NULL OR (received_at, message_id) > (?3, ?4))
ORDER BY received_at, message_id
LIMIT +?5
