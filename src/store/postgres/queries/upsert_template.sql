-- Creates or replaces account $1's template named $2.
INSERT INTO message_template (account_id, name, body, created_at, updated_at)
VALUES ($1, $2, $3, $4, $4)
ON CONFLICT (account_id, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at
