-- Moves messages of provider ?1 to status ?2 from receipts; ?3 is a JSON array of objects
-- {ref, at, code, message}; ?4 a JSON array of the statuses allowed to move to ?2. The event
-- time never precedes the message's last change, so its history stays in order.
-- The receipts are resolved to message ids first (MATERIALIZED, CROSS JOIN: the receipts
-- drive the index lookups); left to itself the planner scans every message of the provider.
WITH receipt AS MATERIALIZED (
    SELECT m.message_id AS id, v.value ->> 'at' AS at, v.value ->> 'code' AS code,
           v.value ->> 'message' AS message
    FROM json_each(?3) AS v CROSS JOIN message AS m
    WHERE m.provider = ?1 AND m.provider_message_id = v.value ->> 'ref'
)
UPDATE message
SET status = ?2,
    error_code = COALESCE(receipt.code, error_code),
    error_message = COALESCE(receipt.message, error_message),
    updated_at = MAX(receipt.at, updated_at)
FROM receipt
WHERE message.message_id = receipt.id
  AND message.status IN (SELECT s.value FROM json_each(?4) AS s)
RETURNING message_id, account_id, provider_message_id, updated_at
