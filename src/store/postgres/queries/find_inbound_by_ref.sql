-- The inbound message provider $1 named $2, if it was stored already (a provider's retry).
SELECT message_id, account_id, thread_id
FROM inbound_message
WHERE provider = $1 AND provider_message_id = $2
