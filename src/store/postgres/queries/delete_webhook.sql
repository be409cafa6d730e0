-- Removes the account's webhook URL (the secret stays); answers whether there was one.
UPDATE account
SET webhook_url = NULL, webhook_enabled = 1, webhook_failing_since = NULL,
    webhook_disabled_at = NULL, updated_at = $2
WHERE account_id = $1 AND webhook_url IS NOT NULL
