-- Makes messages claimed by worker processes that are not alive (no heartbeat since ?1) due
-- again at once: their worker died mid-delivery. Every worker records a heartbeat before its
-- first claim, so a live one is never mistaken for a dead one. (Leases also run out.) The
-- fencing token moves on, so the silent worker, should it wake, can record nothing.
UPDATE message SET lease_until = 0, claimed_by = NULL, claim_seq = claim_seq + 1, updated_at = ?2
WHERE status = 'sending' AND claimed_by IS NOT NULL AND claimed_by NOT IN (
    SELECT instance_id FROM worker_instance WHERE heartbeat_at >= ?1
)
