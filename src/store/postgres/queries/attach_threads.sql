-- Puts stored inbound messages in their threads (the JSON array $1 of {message_id,
-- thread_id}; stored first, the threads counted after).
UPDATE inbound_message AS m SET thread_id = a.thread_id
FROM jsonb_to_recordset($1::jsonb) AS a (message_id TEXT, thread_id TEXT)
WHERE m.message_id = a.message_id
