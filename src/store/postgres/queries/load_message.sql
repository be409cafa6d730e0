-- One message, only if it belongs to account $2 (another tenant's message does not exist).
SELECT message_id, status, phone_number, channel, priority, segments, cost, provider,
       provider_message_id, error_code, error_message, created_at
FROM message WHERE message_id = $1 AND account_id = $2
