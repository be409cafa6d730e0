-- Marks the account's ($1) unread inbound messages among JSON array $2 read at $3; answers
-- each one marked and its thread, so the threads' unread counts can follow. A message another
-- transaction is marking is waited for, then found read and left out.
UPDATE inbound_message SET read_at = $3
WHERE account_id = $1 AND read_at IS NULL
  AND message_id IN (SELECT jsonb_array_elements_text($2::jsonb))
RETURNING thread_id
