-- Replaces the account's webhook signing secret.
UPDATE account SET webhook_secret = $2, updated_at = $3 WHERE account_id = $1
