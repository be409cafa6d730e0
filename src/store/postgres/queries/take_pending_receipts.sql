-- Takes the held receipts of provider $1 for the provider ids in the JSON array $2.
DELETE FROM pending_receipt
WHERE provider = $1
  AND provider_message_id IN (SELECT jsonb_array_elements_text($2::jsonb))
RETURNING provider_message_id, status, at, error_code, error_message
