-- The stored answer under account $1's idempotency key $2, if recorded at or after $3.
SELECT request_hash, response_status, response_body
FROM idempotency_key
WHERE account_id = $1 AND idempotency_key = $2 AND created_at >= $3
