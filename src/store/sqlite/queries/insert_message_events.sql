-- The status events of the history rows insert_status_events.sql adds next, with the same
-- arguments (?1 a JSON array of [message_id, account_id, at], each message once; ?2 the
-- status): one event for each message whose history does not hold ?2 yet.
-- The previous status is the highest-ranked status in the history below ?2 (queued < sending
-- < sent < delivered < read < every failure), found by point lookups on the history's
-- primary key from the next rank down, stopping at the first that exists (COALESCE
-- evaluates lazily): usually one lookup.
-- Each element is read once, into `entry`: json_each hands out an element that is an array as
-- JSON text, written out and parsed again by every `->>` that reads it (five a row or more).
WITH entry AS MATERIALIZED (
    SELECT e.value ->> 0 AS message_id, e.value ->> 1 AS account_id, e.value ->> 2 AS at
    FROM json_each(?1) AS e
)
INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
SELECT r.account_id, 'message.status', r.message_id, ?2,
       CASE ?2
       WHEN 'queued' THEN NULL
       WHEN 'sending' THEN
           (SELECT h.status FROM message_status_event AS h
            WHERE h.message_id = r.message_id AND h.status = 'queued')
       ELSE COALESCE(
           CASE WHEN ?2 NOT IN ('sent', 'delivered', 'read') THEN
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = r.message_id AND h.status = 'read') END,
           CASE WHEN ?2 NOT IN ('sent', 'delivered') THEN
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = r.message_id AND h.status = 'delivered') END,
           CASE WHEN ?2 <> 'sent' THEN
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = r.message_id AND h.status = 'sent') END,
           (SELECT h.status FROM message_status_event AS h
            WHERE h.message_id = r.message_id AND h.status = 'sending'),
           (SELECT h.status FROM message_status_event AS h
            WHERE h.message_id = r.message_id AND h.status = 'queued'))
       END,
       r.at, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
FROM entry AS r
WHERE NOT EXISTS (
    SELECT 1 FROM message_status_event AS x
    WHERE x.message_id = r.message_id AND x.status = ?2);
