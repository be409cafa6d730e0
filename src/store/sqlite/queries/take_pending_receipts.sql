-- Takes the held receipts of provider ?1 for the provider ids in the JSON array ?2 (messages
-- whose send was just recorded), to apply them in the same transaction.
DELETE FROM pending_receipt
WHERE provider = ?1 AND provider_message_id IN (SELECT value FROM json_each(?2))
RETURNING provider_message_id, status, at, error_code, error_message
