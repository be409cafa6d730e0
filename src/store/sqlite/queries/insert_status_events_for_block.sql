-- Adds status ?4 at time ?5 to the history of campaign ?3's messages with ids from ?1 to ?2:
-- the block one fan-out step just inserted, found by the primary key's range. (The `+`
-- keeps SQLite off the campaign index, which would walk every message of the campaign.)
INSERT INTO message_status_event (message_id, status, at)
SELECT message_id, ?4, ?5 FROM message
WHERE message_id BETWEEN ?1 AND ?2 AND +campaign_id = ?3
ON CONFLICT (message_id, status) DO NOTHING
