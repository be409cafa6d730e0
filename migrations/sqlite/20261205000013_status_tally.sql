-- How many of an account's messages reached each status, per minute and per hour (the
-- dashboard's overview: GET /api/messaging/overview), counted by the time the status was
-- reached, so the overview reads a few hundred rows however many messages there are.
-- Counted from the event log, not by a trigger: the workers fold the events committed since
-- `status_tally_cursor` into these rows about once a second (one grouped statement), which
-- costs the delivery path nothing; a per-row trigger measured 12 % of dispatch throughput.
-- Minutes are kept two hours and hours 32 days (the sweeper forgets older rows).
CREATE TABLE status_tally (
    account_id TEXT NOT NULL,
    -- The bucket's length in milliseconds: 60000 (a minute) or 3600000 (an hour).
    span       INTEGER NOT NULL CHECK (span IN (60000, 3600000)),
    -- The bucket's start, Unix milliseconds.
    bucket     INTEGER NOT NULL,
    status     TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (account_id, span, bucket, status)
) WITHOUT ROWID;
-- For the sweeper's purge of old buckets (a new row per account, status and minute: the
-- count's updates do not touch it).
CREATE INDEX status_tally_age ON status_tally (span, bucket);

-- The last event folded into the tallies (one row). The fold moves it in the transaction
-- that adds the counts, and only from the value it read, so no event is counted twice.
CREATE TABLE status_tally_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    event_seq INTEGER NOT NULL
);

-- What the history already holds for the kept hours; the events up to now are in it.
INSERT INTO status_tally (account_id, span, bucket, status, n)
SELECT m.account_id, s.span, h.at - h.at % s.span, h.status, COUNT(*)
FROM message_status_event AS h
JOIN message AS m ON m.message_id = h.message_id
CROSS JOIN (SELECT 60000 AS span UNION ALL SELECT 3600000) AS s
WHERE h.at >= CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) - 32 * 86400000
GROUP BY m.account_id, s.span, h.at - h.at % s.span, h.status;
INSERT INTO status_tally_cursor (id, event_seq)
SELECT 1, COALESCE(MAX(event_seq), 0) FROM event;
