-- For each lookup in the JSON array $1 ({phone_number, channel, account_id}), the last
-- outbound message on its channel to its number (of its account, or of any account when
-- account_id is null): whose number a reply came from, and what it answers. `idx` is the
-- lookup's place in the array (from 0); a lookup that found nothing has no row.
SELECT l.idx - 1 AS idx, m.message_id, m.account_id, m.campaign_id
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS l (lookup, idx)
CROSS JOIN LATERAL (
    SELECT o.message_id, o.account_id, o.campaign_id
    FROM message AS o
    WHERE o.phone_number = l.lookup ->> 'phone_number' AND o.channel = l.lookup ->> 'channel'
      AND (l.lookup ->> 'account_id' IS NULL OR o.account_id = l.lookup ->> 'account_id')
    ORDER BY o.created_at DESC
    LIMIT 1
) AS m
