-- Account $1's own templates, by name.
SELECT name, body, created_at, updated_at FROM message_template
WHERE account_id = $1 ORDER BY name
