-- Marks messages sent and settles their cost; ?1 is a JSON array of objects {id, claim,
-- provider, ref, at}. Only a message still being delivered under that claim moves: a canceled
-- one stays canceled, and a stalled worker whose claim was taken over writes nothing. The
-- attempt's outcome is known now: any in-doubt mark is cleared.
UPDATE message
SET status = 'sent', billing = 'settled', provider = v.value ->> 'provider',
    provider_message_id = v.value ->> 'ref', lease_until = 0, claimed_by = NULL,
    error_code = NULL, error_message = NULL, in_doubt_since = NULL, updated_at = MAX(v.value ->> 'at', updated_at)
FROM json_each(?1) AS v
WHERE message.message_id = v.value ->> 'id' AND message.status = 'sending'
  AND message.claim_seq = v.value ->> 'claim'
RETURNING message_id, account_id, cost, updated_at
