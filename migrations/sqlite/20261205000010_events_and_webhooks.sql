-- Events and webhooks to customers (issue 9, SPEC §7).

-- The account's webhook endpoint. Every account has a signing secret from its creation (a
-- message's status_callback is signed with it too); the URL is optional.
ALTER TABLE account ADD COLUMN webhook_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE account ADD COLUMN webhook_url TEXT;
ALTER TABLE account ADD COLUMN webhook_enabled INTEGER NOT NULL DEFAULT 1;
-- Since when every attempt at the endpoint failed (NULL: the last one succeeded).
ALTER TABLE account ADD COLUMN webhook_failing_since INTEGER;
ALTER TABLE account ADD COLUMN webhook_disabled_at INTEGER;
UPDATE account SET webhook_secret = 'whsec_' || lower(hex(randomblob(24)));

-- Everything that happened to an account's messages, in commit order: the webhooks' outbox
-- and the event stream's log. Written by the triggers below in the transaction that makes
-- the change, so an event is never lost and never invented. AUTOINCREMENT: a sequence number
-- is never reused, even after purging, so `Last-Event-ID` cannot skip a newer event.
-- (SQLite has one writer, so numbers are handed out in commit order.)
CREATE TABLE event (
    event_seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id      TEXT NOT NULL,
    -- 'message.status' or 'message.inbound'.
    kind            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    -- The status reached ('received' for an inbound message) and the one before it.
    status          TEXT NOT NULL,
    previous_status TEXT,
    -- When it happened, and when it was recorded.
    at              INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

-- One POST of one event to one URL: the account's webhook or the message's status_callback.
-- The URL is looked up at each attempt, so a changed endpoint gets what is still pending.
CREATE TABLE webhook_delivery (
    delivery_id INTEGER PRIMARY KEY,
    event_seq   INTEGER NOT NULL,
    account_id  TEXT NOT NULL,
    target      TEXT NOT NULL CHECK (target IN ('webhook', 'status_callback')),
    state       TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Attempts made so far; also the fencing token of the current claim.
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- Next attempt; while claimed, the end of the claim's lease.
    due_at      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX webhook_delivery_due ON webhook_delivery (due_at) WHERE state = 'pending';
CREATE INDEX webhook_delivery_account ON webhook_delivery (account_id, delivery_id);

-- Each attempt, as the account sees it (GET /api/messaging/webhook/deliveries/{id}).
CREATE TABLE webhook_attempt (
    delivery_id     INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    latency_ms      INTEGER NOT NULL,
    -- The receiver's HTTP status; NULL when none came (refused, timed out, unreachable).
    response_status INTEGER,
    error           TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

-- Every status a message reaches is an event. The previous status is the highest one in its
-- history below this one (statuses never go backwards; the failure statuses rank last).
CREATE TRIGGER message_status_event_is_an_event AFTER INSERT ON message_status_event
BEGIN
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT m.account_id, 'message.status', NEW.message_id, NEW.status,
           (SELECT h.status FROM message_status_event AS h
            WHERE h.message_id = NEW.message_id
              AND (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
                < (CASE NEW.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
            ORDER BY (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                      WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END) DESC
            LIMIT 1),
           NEW.at, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
    FROM message AS m WHERE m.message_id = NEW.message_id;
END;

-- An inbound message whose account is known is an event (an unroutable one belongs to nobody).
CREATE TRIGGER inbound_message_is_an_event AFTER INSERT ON inbound_message
WHEN NEW.account_id IS NOT NULL
BEGIN
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    VALUES (NEW.account_id, 'message.inbound', NEW.message_id, 'received', NULL,
            NEW.received_at, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;

-- Each event is queued for the account's webhook (when it has an enabled one) and, for a
-- status, for the message's own status_callback.
CREATE TRIGGER event_is_delivered AFTER INSERT ON event
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
