-- The account's webhook endpoint and signing secret.
SELECT webhook_url, webhook_secret, webhook_enabled, webhook_failing_since, webhook_disabled_at
FROM account WHERE account_id = $1
