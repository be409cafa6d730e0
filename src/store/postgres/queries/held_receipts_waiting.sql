-- Whether a receipt is held for any of the provider ids in the JSON array $2 of the
-- providers in the JSON array $1: most batches of sends have none, and then need no
-- transaction to take them (take_pending_receipts.sql).
SELECT EXISTS (
    SELECT 1 FROM pending_receipt
    WHERE provider IN (SELECT jsonb_array_elements_text($1::jsonb))
      AND provider_message_id IN (SELECT jsonb_array_elements_text($2::jsonb))
)
