-- Claims up to $5 due messages of priority $4 for worker $2 until $1 (the lease), oldest due
-- first, as SQLite's claim_lane.sql does. SKIP LOCKED: workers in other processes claiming
-- at the same moment take other rows instead of waiting for these, and never the same ones.
-- Each claim bumps `claim_seq`, the fencing token; taking over a run-out lease marks the
-- attempt in doubt since that claim. (SET expressions read the row as it was.)
UPDATE message
SET status = 'sending', attempts = message.attempts + 1, lease_until = $1, claimed_by = $2,
    claim_seq = message.claim_seq + 1,
    in_doubt_since = CASE WHEN message.status = 'sending' AND message.lease_until > 0
        THEN COALESCE(message.in_doubt_since, message.updated_at)
        ELSE message.in_doubt_since END,
    updated_at = $3
FROM (
    SELECT message_id FROM message
    WHERE status IN ('queued', 'sending') AND priority = $4 AND due_at <= $3
      AND lease_until <= $3
    ORDER BY due_at
    LIMIT $5
    FOR UPDATE SKIP LOCKED
) AS due
WHERE message.message_id = due.message_id
RETURNING message.message_id, message.account_id, message.campaign_id, message.channel,
          message.phone_number, message.sender_id, message.body, message.attachment_url,
          message.priority, message.attempts, message.expires_at, message.cost,
          message.claim_seq, message.provider, message.in_doubt_since,
          message.whatsapp_template
