-- Moves messages of provider $1 to status $2 from receipts; $3 is a JSON array of objects
-- {ref, at, code, message}; $4 a JSON array of the statuses allowed to move to $2. The event
-- time never precedes the message's last change, so its history stays in order.
WITH receipt AS (
    SELECT m.message_id AS id, (v.value ->> 'at')::bigint AS at, v.value ->> 'code' AS code,
           v.value ->> 'message' AS message
    FROM jsonb_array_elements($3::jsonb) AS v
    JOIN message AS m ON m.provider = $1 AND m.provider_message_id = v.value ->> 'ref'
)
UPDATE message
SET status = $2,
    error_code = COALESCE(receipt.code, message.error_code),
    error_message = COALESCE(receipt.message, message.error_message),
    updated_at = GREATEST(receipt.at, message.updated_at)
FROM receipt
WHERE message.message_id = receipt.id
  AND message.status IN (SELECT jsonb_array_elements_text($4::jsonb))
RETURNING message.message_id, message.account_id, message.provider_message_id, message.updated_at
