-- Forgets, at most 50,000 of each per call, finished deliveries with their attempts and
-- events recorded before ?1, but never an event a pending delivery, the tally or the webhooks'
-- cursor still needs. Ids grow with time, so "before ?1" is "below the first id at or after
-- ?1": a scan of the old rows only.
DELETE FROM webhook_attempt WHERE delivery_id IN (
    SELECT delivery_id FROM webhook_delivery
    WHERE state <> 'pending' AND delivery_id < COALESCE(
        (SELECT delivery_id FROM webhook_delivery WHERE created_at >= ?1
         ORDER BY delivery_id LIMIT 1), 9223372036854775807)
    ORDER BY delivery_id LIMIT 50000);
DELETE FROM webhook_delivery WHERE delivery_id IN (
    SELECT delivery_id FROM webhook_delivery
    WHERE state <> 'pending' AND delivery_id < COALESCE(
        (SELECT delivery_id FROM webhook_delivery WHERE created_at >= ?1
         ORDER BY delivery_id LIMIT 1), 9223372036854775807)
    ORDER BY delivery_id LIMIT 50000);
DELETE FROM event WHERE event_seq IN (
    SELECT event_seq FROM event
    WHERE event_seq < MIN(
        COALESCE((SELECT event_seq FROM event WHERE created_at >= ?1
                  ORDER BY event_seq LIMIT 1), 9223372036854775807),
        COALESCE((SELECT MIN(event_seq) FROM webhook_delivery WHERE state = 'pending'),
                 9223372036854775807),
        COALESCE((SELECT event_seq + 1 FROM status_tally_cursor WHERE id = 1),
                 9223372036854775807),
        COALESCE((SELECT event_seq + 1 FROM webhook_cursor WHERE id = 1),
                 9223372036854775807))
    ORDER BY event_seq LIMIT 50000);
