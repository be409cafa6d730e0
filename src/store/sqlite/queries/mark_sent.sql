-- Marks messages sent and settles their cost; ?1 is a JSON array of objects {id, provider,
-- ref, at}. Only a message still being delivered moves (a canceled one stays canceled).
UPDATE message
SET status = 'sent', billing = 'settled', provider = v.value ->> 'provider',
    provider_message_id = v.value ->> 'ref', lease_until = 0, claimed_by = NULL,
    error_code = NULL, error_message = NULL, updated_at = v.value ->> 'at'
FROM json_each(?1) AS v
WHERE message.message_id = v.value ->> 'id' AND message.status IN ('queued', 'sending')
RETURNING message_id, account_id, cost, updated_at
