-- How many of an account's messages reached each status, per minute and per hour (the
-- dashboard's overview: GET /api/messaging/overview). Counted by the time the status was
-- reached, from the history, by the trigger below in the transaction that records it, so the
-- overview reads a few hundred rows however many messages there are. Minutes are kept two
-- hours and hours 32 days (the sweeper forgets older rows).
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

CREATE TRIGGER message_status_event_is_tallied AFTER INSERT ON message_status_event
BEGIN
    INSERT INTO status_tally (account_id, span, bucket, status, n)
    SELECT m.account_id, s.span, NEW.at - NEW.at % s.span, NEW.status, 1
    FROM message AS m CROSS JOIN (SELECT 60000 AS span UNION ALL SELECT 3600000) AS s
    WHERE m.message_id = NEW.message_id
    ON CONFLICT (account_id, span, bucket, status) DO UPDATE SET n = n + 1;
END;

-- What the history already holds for the kept hours.
INSERT INTO status_tally (account_id, span, bucket, status, n)
SELECT m.account_id, s.span, h.at - h.at % s.span, h.status, COUNT(*)
FROM message_status_event AS h
JOIN message AS m ON m.message_id = h.message_id
CROSS JOIN (SELECT 60000 AS span UNION ALL SELECT 3600000) AS s
WHERE h.at >= CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) - 32 * 86400000
GROUP BY m.account_id, s.span, h.at - h.at % s.span, h.status;
