-- One message of the account, as search lists it.
SELECT message_id, campaign_id, channel, phone_number, sender_id, body, priority, status,
       segments, cost, error_code, error_message, created_at, updated_at
FROM message
WHERE account_id = $1 AND message_id = $2
