-- Messages waiting for delivery (queued or sending: their cost is reserved, which is what
-- the partial index message_ready selects by) per priority.
SELECT priority, COUNT(*) AS waiting FROM message
WHERE billing = 'reserved' GROUP BY priority
