-- Extends to $2 the leases of the messages worker $1 is delivering. SKIP LOCKED: a row
-- locked by this process's own outcome batch is being finished (its lease no longer
-- matters), and waiting for it while that batch waits for rows this statement already
-- locked would deadlock the two.
UPDATE message SET lease_until = $2
WHERE message_id IN (
    SELECT message_id FROM message
    WHERE claimed_by = $1 AND status = 'sending' AND lease_until > 0
    FOR UPDATE SKIP LOCKED
)
