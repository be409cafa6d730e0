-- Extends the leases of everything worker $1 holds to $2: a live worker keeps its claims
-- however long a message waits in a rate limiter, so nothing it holds is claimed twice.
UPDATE message SET lease_until = $2
WHERE claimed_by = $1 AND status = 'sending' AND lease_until > 0
