-- The status-event and webhook-outbox triggers, rewritten for cost (the PostgreSQL migration
-- of the same name makes them statement triggers; SQLite has only row triggers). They write
-- exactly the rows 20261205000010's triggers wrote.
--
-- * The previous status (the highest-ranked status in the message's history below the new
--   one) is found by point lookups on the history's primary key, from the next rank down,
--   stopping at the first that exists (COALESCE evaluates lazily): usually one lookup,
--   instead of a range scan of the history with a sort. Checked against the old trigger on
--   3,000 random histories (statuses in any order, failures included): the same events.
-- * The outbox trigger runs its program only when there is something to deliver: an enabled
--   webhook on the account or a status_callback on the message (its WHEN clause). Most events
--   have neither.
--
-- Measured in Python's sqlite3 (CPU time per history row, 40,000 messages through five
-- statuses in statements of 200, every migration applied): see BENCHMARKS.md, "Event
-- triggers once per statement".
DROP TRIGGER message_status_event_is_an_event;
CREATE TRIGGER message_status_event_is_an_event AFTER INSERT ON message_status_event
BEGIN
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT m.account_id, 'message.status', NEW.message_id, NEW.status,
           CASE NEW.status
           WHEN 'queued' THEN NULL
           WHEN 'sending' THEN
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = NEW.message_id AND h.status = 'queued')
           ELSE COALESCE(
               CASE WHEN NEW.status NOT IN ('sent', 'delivered', 'read') THEN
                   (SELECT h.status FROM message_status_event AS h
                    WHERE h.message_id = NEW.message_id AND h.status = 'read') END,
               CASE WHEN NEW.status NOT IN ('sent', 'delivered') THEN
                   (SELECT h.status FROM message_status_event AS h
                    WHERE h.message_id = NEW.message_id AND h.status = 'delivered') END,
               CASE WHEN NEW.status <> 'sent' THEN
                   (SELECT h.status FROM message_status_event AS h
                    WHERE h.message_id = NEW.message_id AND h.status = 'sent') END,
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = NEW.message_id AND h.status = 'sending'),
               (SELECT h.status FROM message_status_event AS h
                WHERE h.message_id = NEW.message_id AND h.status = 'queued'))
           END,
           NEW.at, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
    FROM message AS m WHERE m.message_id = NEW.message_id;
END;

DROP TRIGGER event_is_delivered;
CREATE TRIGGER event_is_delivered AFTER INSERT ON event
WHEN (SELECT a.webhook_url IS NOT NULL AND a.webhook_enabled = 1
      FROM account AS a WHERE a.account_id = NEW.account_id)
  OR (NEW.kind = 'message.status'
      AND (SELECT m.status_callback IS NOT NULL
           FROM message AS m WHERE m.message_id = NEW.message_id))
BEGIN
    INSERT INTO webhook_delivery (event_seq, account_id, target, state, due_at, created_at)
    SELECT NEW.event_seq, NEW.account_id, 'webhook', 'pending', NEW.created_at, NEW.created_at
    FROM account AS a
    WHERE a.account_id = NEW.account_id AND a.webhook_url IS NOT NULL AND a.webhook_enabled = 1;
    INSERT INTO webhook_delivery (event_seq, account_id, target, state, due_at, created_at)
    SELECT NEW.event_seq, NEW.account_id, 'status_callback', 'pending', NEW.created_at,
           NEW.created_at
    FROM message AS m
    WHERE NEW.kind = 'message.status' AND m.message_id = NEW.message_id
      AND m.status_callback IS NOT NULL;
END;
