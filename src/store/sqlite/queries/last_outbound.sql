-- For each lookup in the JSON array ?1 ({phone_number, channel, account_id}), the last
-- outbound message on its channel to its number (of its account, or of any account when
-- account_id is null): whose number a reply came from, and what it answers. `idx` is the
-- lookup's place in the array; a lookup that found nothing has no row.
SELECT l.key AS idx, m.message_id, m.account_id, m.campaign_id
FROM json_each(?1) AS l
JOIN message AS m ON m.message_id = (
    SELECT o.message_id
    FROM message AS o
    WHERE o.phone_number = l.value ->> 'phone_number' AND o.channel = l.value ->> 'channel'
      AND (l.value ->> 'account_id' IS NULL OR o.account_id = l.value ->> 'account_id')
    ORDER BY o.created_at DESC
    LIMIT 1
)
