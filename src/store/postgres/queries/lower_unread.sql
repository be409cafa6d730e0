-- Lowers thread $1's unread count by $2 (never below zero).
UPDATE thread SET unread_count = GREATEST(unread_count - $2, 0) WHERE thread_id = $1
