-- Puts inbound message ?1 in thread ?2 (stored first, the thread counted after).
UPDATE inbound_message SET thread_id = ?2 WHERE message_id = ?1
