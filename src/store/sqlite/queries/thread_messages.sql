-- A thread's messages both ways, oldest first, after the cursor (?5 ms, ?6 id), at most ?7:
-- inbound by thread ?1, outbound by account ?4, channel ?3 and number ?2.
SELECT message_id, direction, body, at, status, is_read, keyword, campaign_id FROM (
    SELECT message_id, 'inbound' AS direction, body, received_at AS at, 'received' AS status,
           read_at IS NOT NULL AS is_read, keyword, campaign_id
    FROM inbound_message WHERE thread_id = ?1
    UNION ALL
    SELECT message_id, 'outbound', body, created_at, status, NULL, NULL, campaign_id
    FROM message WHERE phone_number = ?2 AND channel = ?3 AND account_id = ?4
)
WHERE ?5 IS NULL OR (at, message_id) > (?5, ?6)
ORDER BY at, message_id
LIMIT +?7
