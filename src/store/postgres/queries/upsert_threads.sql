-- Counts inbound messages in their threads (made on the first), one element of the JSON
-- array $1 per thread, in key order (so that two transactions take the rows in the same
-- order): the latest text and time, `unread` more unread. Answers each thread's id with its
-- key.
INSERT INTO thread (thread_id, account_id, channel, phone_number, last_inbound, last_inbound_at,
                    unread_count, created_at)
SELECT c.thread_id, c.account_id, c.channel, c.phone_number, c.last_inbound,
       c.last_inbound_at, c.unread, c.created_at
FROM jsonb_to_recordset($1::jsonb) AS c (
    thread_id TEXT, account_id TEXT, channel TEXT, phone_number TEXT, last_inbound TEXT,
    last_inbound_at BIGINT, unread BIGINT, created_at BIGINT)
ON CONFLICT (account_id, channel, phone_number) DO UPDATE SET
    last_inbound = CASE WHEN excluded.last_inbound_at >= thread.last_inbound_at
                        THEN excluded.last_inbound ELSE thread.last_inbound END,
    last_inbound_at = GREATEST(thread.last_inbound_at, excluded.last_inbound_at),
    unread_count = thread.unread_count + excluded.unread_count
RETURNING thread_id, account_id, channel, phone_number
