-- Keeps the answer to a request under account $1's idempotency key $2.
INSERT INTO idempotency_key
    (account_id, idempotency_key, request_hash, response_status, response_body, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (account_id, idempotency_key) DO UPDATE SET
    request_hash = excluded.request_hash,
    response_status = excluded.response_status,
    response_body = excluded.response_body,
    created_at = excluded.created_at
