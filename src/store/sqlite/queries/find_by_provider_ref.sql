-- Whether any message carries provider ?1's id ?2.
SELECT 1 FROM message WHERE provider = ?1 AND provider_message_id = ?2
