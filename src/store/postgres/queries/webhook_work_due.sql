-- Whether any webhook delivery is due by $1 and unclaimed (an idle dispatcher then writes
-- nothing).
SELECT EXISTS (
    SELECT 1 FROM webhook_delivery
    WHERE state = 'pending' AND due_at <= $1 AND claimed_until <= $1)
