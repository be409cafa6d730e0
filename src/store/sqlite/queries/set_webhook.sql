-- Sets the account's webhook URL and enables it: a new URL starts with a clean record. A
-- webhook set anew (none before, or disabled) gets the events from now on.
UPDATE account
SET webhook_from_seq = CASE WHEN webhook_url IS NULL OR webhook_enabled = 0
                            THEN (SELECT COALESCE(MAX(event_seq), 0) FROM event)
                            ELSE webhook_from_seq END,
    webhook_url = ?2, webhook_enabled = 1, webhook_failing_since = NULL,
    webhook_disabled_at = NULL, updated_at = ?3
WHERE account_id = ?1
