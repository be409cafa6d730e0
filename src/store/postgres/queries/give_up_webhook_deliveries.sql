-- Gives up what is pending for the account's webhook (removed or disabled); each can be
-- queued again through the API.
UPDATE webhook_delivery SET state = 'failed', finished_at = $2
WHERE account_id = $1 AND target = 'webhook' AND state = 'pending'
