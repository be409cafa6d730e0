-- Account $1's template named $2.
SELECT name, body, created_at, updated_at FROM message_template
WHERE account_id = $1 AND name = $2
