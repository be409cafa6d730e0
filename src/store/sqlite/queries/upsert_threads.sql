-- Counts inbound messages in their threads (made on the first), one element of the JSON
-- array ?1 per thread: the latest text and time, `unread` more unread. Answers each thread's
-- id with its key.
INSERT INTO thread (thread_id, account_id, channel, phone_number, last_inbound, last_inbound_at,
                    unread_count, created_at)
SELECT c.value ->> 'thread_id', c.value ->> 'account_id', c.value ->> 'channel',
       c.value ->> 'phone_number', c.value ->> 'last_inbound', c.value ->> 'last_inbound_at',
       c.value ->> 'unread', c.value ->> 'created_at'
FROM json_each(?1) AS c WHERE true
ON CONFLICT (account_id, channel, phone_number) DO UPDATE SET
    last_inbound = CASE WHEN excluded.last_inbound_at >= thread.last_inbound_at
                        THEN excluded.last_inbound ELSE thread.last_inbound END,
    last_inbound_at = max(thread.last_inbound_at, excluded.last_inbound_at),
    unread_count = thread.unread_count + excluded.unread_count
RETURNING thread_id, account_id, channel, phone_number
