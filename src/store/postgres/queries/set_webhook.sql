-- Sets the account's webhook URL and enables it: a new URL starts with a clean record.
UPDATE account
SET webhook_url = $2, webhook_enabled = 1, webhook_failing_since = NULL,
    webhook_disabled_at = NULL, updated_at = $3
WHERE account_id = $1
