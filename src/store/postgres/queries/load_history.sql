-- The status history of message $1.
SELECT status, at FROM message_status_event WHERE message_id = $1
