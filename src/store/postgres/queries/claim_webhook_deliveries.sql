-- Claims up to $4 due deliveries until $1 (each claim bumps `attempts`, the fencing token of
-- its outcome), oldest due first, skipping the accounts in the JSON array $3 and those
-- whose webhook is off. SKIP LOCKED: dispatchers in other processes take other rows.
UPDATE webhook_delivery SET attempts = webhook_delivery.attempts + 1, claimed_until = $1
FROM (
    SELECT d.delivery_id FROM webhook_delivery AS d
    WHERE d.state = 'pending' AND d.due_at <= $2 AND d.claimed_until <= $2
      AND d.account_id NOT IN (SELECT jsonb_array_elements_text($3::jsonb))
      AND (d.target = 'status_callback' OR EXISTS (
          SELECT 1 FROM account AS a WHERE a.account_id = d.account_id
            AND a.webhook_url IS NOT NULL AND a.webhook_enabled = 1))
    ORDER BY d.due_at LIMIT $4
    FOR UPDATE OF d SKIP LOCKED
) AS due
WHERE webhook_delivery.delivery_id = due.delivery_id
RETURNING webhook_delivery.delivery_id, webhook_delivery.attempts
