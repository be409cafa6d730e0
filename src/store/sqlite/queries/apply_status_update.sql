-- Moves messages of provider ?1 to status ?2 from receipts; ?3 is a JSON array of objects
-- {ref, at, code, message}; ?4 a JSON array of the statuses allowed to move to ?2. The event
-- time never precedes the message's last change, so its history stays in order.
UPDATE message
SET status = ?2,
    error_code = COALESCE(v.value ->> 'code', error_code),
    error_message = COALESCE(v.value ->> 'message', error_message),
    updated_at = MAX(v.value ->> 'at', updated_at)
FROM json_each(?3) AS v
WHERE message.provider = ?1 AND message.provider_message_id = v.value ->> 'ref'
  AND message.status IN (SELECT s.value FROM json_each(?4) AS s)
RETURNING message_id, provider_message_id, updated_at
