-- The last outbound message on channel $2 to number $1 (of account $3, or of any account when
-- $3 is NULL): whose number a reply came from, and what it answers.
SELECT message_id, account_id, campaign_id
FROM message
WHERE phone_number = $1 AND channel = $2 AND ($3::text IS NULL OR account_id = $3)
ORDER BY created_at DESC
LIMIT 1
