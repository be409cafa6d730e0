-- The schema of SQLite's migration of the same name, where an account's webhook takes its
-- events from the event log by cursor. PostgreSQL keeps the trigger's delivery rows: several
-- processes dispatch there, and one cursor read by several would need a lease that fences its
-- writes (not built). So the cursor and `webhook_from_seq` are not read here; the index holds
-- the trigger's rows as it holds SQLite's.
ALTER TABLE account ADD COLUMN webhook_from_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE webhook_cursor (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    event_seq BIGINT NOT NULL
);
INSERT INTO webhook_cursor (id, event_seq) SELECT 1, COALESCE(MAX(event_seq), 0) FROM event;

CREATE UNIQUE INDEX webhook_delivery_event ON webhook_delivery (event_seq)
WHERE target = 'webhook';
