-- A live (not yet expired) idempotency record: its request fingerprint and stored answer.
SELECT request_hash, response_status, response_body
FROM idempotency_key
WHERE account_id = ?1 AND idempotency_key = ?2 AND created_at >= ?3
