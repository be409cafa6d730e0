-- An account's messages for search. The caller appends the filters it was given (numbered
-- parameters $2 to $10, bound whether used or not) and the keyset order and limit ($11):
-- newest first, (created_at, message_id) as the cursor, so new messages never shift a page.
SELECT message_id, campaign_id, channel, phone_number, sender_id, body, priority, status,
       segments, cost, error_code, error_message, created_at, updated_at
FROM message
WHERE account_id = $1
