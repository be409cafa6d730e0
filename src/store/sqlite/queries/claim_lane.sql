-- Claims up to ?5 due messages of priority ?4 for worker ?2 until ?1 (the lease), oldest due
-- first. A row leased by a live worker is skipped; one whose lease ran out is taken again.
-- Each claim bumps `claim_seq`, the fencing token every outcome of this claim must carry.
-- Taking over a run-out lease (a 'sending' row still leased) takes over an attempt whose
-- outcome is unknown: it is marked in doubt since that claim (`updated_at`), as
-- release_orphans does. The claim's time never precedes the message's last change: `now`
-- (?3) was read before this statement, and an accept that read a later clock may have
-- committed in between; its `queued` must not come after this `sending` in time.
UPDATE message
SET status = 'sending', attempts = attempts + 1, lease_until = ?1, claimed_by = ?2,
    claim_seq = claim_seq + 1,
    in_doubt_since = CASE WHEN status = 'sending' AND lease_until > 0
        THEN COALESCE(in_doubt_since, updated_at) ELSE in_doubt_since END,
    updated_at = MAX(?3, updated_at)
WHERE message_id IN (
    SELECT message_id FROM message
    WHERE status IN ('queued', 'sending') AND priority = ?4 AND due_at <= ?3
      AND lease_until <= ?3
    ORDER BY due_at
    LIMIT +?5
)
RETURNING message_id, account_id, campaign_id, channel, phone_number, sender_id, body,
          attachment_url, priority, attempts, expires_at, cost, claim_seq, provider,
          in_doubt_since, whatsapp_template, updated_at
