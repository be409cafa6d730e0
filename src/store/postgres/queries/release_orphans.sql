-- Makes messages claimed by worker processes that are not alive (no heartbeat since $1) due
-- again at once: their worker died mid-delivery. Every worker records a heartbeat before its
-- first claim, so a live one is never mistaken for a dead one. (Leases also run out.) The
-- fencing token moves on, so the silent worker, should it wake, can record nothing. The
-- attempt is in doubt (the worker may have died before or after calling the provider): it
-- is marked with when it started (the claim's `updated_at`), keeping an older mark if the
-- message was already in doubt.
UPDATE message SET lease_until = 0, claimed_by = NULL, claim_seq = claim_seq + 1,
    in_doubt_since = COALESCE(in_doubt_since, updated_at), updated_at = $2
WHERE status = 'sending' AND claimed_by IS NOT NULL AND claimed_by NOT IN (
    SELECT instance_id FROM worker_instance WHERE heartbeat_at >= $1
)
