-- Puts stored inbound messages in their threads (the JSON array ?1 of {message_id,
-- thread_id}; stored first, the threads counted after).
UPDATE inbound_message SET thread_id = a.value ->> 'thread_id'
FROM json_each(?1) AS a
WHERE inbound_message.message_id = a.value ->> 'message_id'
