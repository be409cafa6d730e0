-- Marks messages sent and settles their cost; $1 is a JSON array of objects {id, claim,
-- provider, ref, at}. Only a message still being delivered under that claim moves.
UPDATE message
SET status = 'sent', billing = 'settled', provider = v.value ->> 'provider',
    provider_message_id = v.value ->> 'ref', lease_until = 0, claimed_by = NULL,
    error_code = NULL, error_message = NULL, in_doubt_since = NULL,
    updated_at = GREATEST((v.value ->> 'at')::bigint, message.updated_at)
FROM jsonb_array_elements($1::jsonb) AS v
WHERE message.message_id = v.value ->> 'id' AND message.status = 'sending'
  AND message.claim_seq = (v.value ->> 'claim')::bigint
RETURNING message.message_id, message.account_id, message.cost,
          message.provider_message_id, message.updated_at
