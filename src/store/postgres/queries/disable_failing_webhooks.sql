-- Disables the webhooks of accounts in $1 that have failed since before $2.
UPDATE account SET webhook_enabled = 0, webhook_disabled_at = $3
WHERE account_id IN (SELECT jsonb_array_elements_text($1::jsonb)) AND webhook_enabled = 1
  AND webhook_failing_since IS NOT NULL AND webhook_failing_since < $2
RETURNING account_id
