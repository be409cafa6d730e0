-- The status events of the history rows insert_status_events_for_block.sql adds next, with
-- the same arguments: status ?4 at ?5 for campaign ?3's messages with ids from ?1 to ?2, the
-- block one fan-out step just inserted. Their history is empty, so no event has a previous
-- status. (The `+` keeps SQLite off the campaign index, as in the history statement.)
INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
SELECT m.account_id, 'message.status', m.message_id, ?4, NULL, ?5,
       CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
FROM message AS m
WHERE m.message_id BETWEEN ?1 AND ?2 AND +m.campaign_id = ?3
  AND NOT EXISTS (
      SELECT 1 FROM message_status_event AS x
      WHERE x.message_id = m.message_id AND x.status = ?4)
