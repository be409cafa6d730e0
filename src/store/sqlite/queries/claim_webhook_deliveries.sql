-- Claims due deliveries, oldest due first, until ?1 (the lease); the attempt count is the
-- claim's fencing token. ?3 is a JSON array of accounts to skip (their endpoints are full),
-- ?4 the most to claim. A delivery for a webhook that is gone or disabled is not claimed.
UPDATE webhook_delivery SET attempts = attempts + 1, claimed_until = ?1
WHERE delivery_id IN (
    SELECT d.delivery_id FROM webhook_delivery AS d
    WHERE d.state = 'pending' AND d.due_at <= ?2 AND d.claimed_until <= ?2
      AND d.account_id NOT IN (SELECT b.value FROM json_each(?3) AS b)
      AND (d.target = 'status_callback' OR EXISTS (
          SELECT 1 FROM account AS a WHERE a.account_id = d.account_id
            AND a.webhook_url IS NOT NULL AND a.webhook_enabled = 1))
    ORDER BY d.due_at LIMIT +?4)
RETURNING delivery_id, attempts
