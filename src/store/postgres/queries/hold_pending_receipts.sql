-- Keeps receipts of provider $1 that matched no message ($2: a JSON array of objects {ref,
-- status, at, code, message}) until the send they report on is recorded.
INSERT INTO pending_receipt
    (provider, provider_message_id, status, at, error_code, error_message, received_at)
SELECT $1, v.value ->> 'ref', v.value ->> 'status', (v.value ->> 'at')::bigint,
       v.value ->> 'code', v.value ->> 'message', $3
FROM jsonb_array_elements($2::jsonb) AS v
