-- An account's webhook takes its events from the event log by cursor, not from a delivery row
-- the event's trigger writes (issue 9: each row cost the single writer ~13 µs an event in
-- three writes). The dispatcher reads the events after `webhook_cursor`, posts them, and
-- writes each delivery's row once, finished, when it records the attempt; the cursor moves
-- in the same transaction past every event recorded. A message's status_callback keeps its
-- row from the trigger.

-- The last event numbered before the account's webhook was set (or enabled again): only
-- events after it go to the webhook, as when the trigger checked the account at each event.
ALTER TABLE account ADD COLUMN webhook_from_seq INTEGER NOT NULL DEFAULT 0;
UPDATE account SET webhook_from_seq = (SELECT COALESCE(MAX(event_seq), 0) FROM event);

-- Every event up to `event_seq` has been handed to the webhooks: delivered, or given a row.
CREATE TABLE webhook_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    event_seq INTEGER NOT NULL
);
-- The deliveries the trigger queued so far keep their rows.
INSERT INTO webhook_cursor (id, event_seq) SELECT 1, COALESCE(MAX(event_seq), 0) FROM event;

-- One row per event for the account's webhook: after a restart the log is read again from the
-- cursor, and an event recorded meanwhile is neither posted nor given a row again.
CREATE UNIQUE INDEX webhook_delivery_event ON webhook_delivery (event_seq)
WHERE target = 'webhook';

DROP TRIGGER event_is_delivered;
CREATE TRIGGER event_is_delivered AFTER INSERT ON event
WHEN NEW.kind = 'message.status'
  AND (SELECT m.status_callback IS NOT NULL FROM message AS m WHERE m.message_id = NEW.message_id)
BEGIN
    INSERT INTO webhook_delivery (event_seq, account_id, target, state, due_at, created_at)
    VALUES (NEW.event_seq, NEW.account_id, 'status_callback', 'pending', NEW.created_at,
            NEW.created_at);
END;
