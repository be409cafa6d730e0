-- The events after ?1, up to ?2 of them: the last one's number and how many.
SELECT MAX(event_seq) AS upto, COUNT(*) AS events FROM (
    SELECT event_seq FROM event WHERE event_seq > ?1 ORDER BY event_seq LIMIT +?2)
