-- Records an inbound message in its thread (made on the first): the latest text and time,
-- one more unread. Answers the thread's id.
INSERT INTO thread (thread_id, account_id, channel, phone_number, last_inbound, last_inbound_at,
                    unread_count, created_at)
VALUES ($1, $2, $3, $4, $5, $6, 1, $6)
ON CONFLICT (account_id, channel, phone_number) DO UPDATE SET
    last_inbound = CASE WHEN excluded.last_inbound_at >= thread.last_inbound_at
                        THEN excluded.last_inbound ELSE thread.last_inbound END,
    last_inbound_at = GREATEST(thread.last_inbound_at, excluded.last_inbound_at),
    unread_count = thread.unread_count + 1
RETURNING thread_id
