-- Drops idempotency records created before $1 (they are honoured for 24 hours).
DELETE FROM idempotency_key WHERE created_at < $1
