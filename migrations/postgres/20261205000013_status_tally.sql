-- How many of an account's messages reached each status, per minute and per hour (PostgreSQL
-- dialect of migrations/sqlite/20261205000013_status_tally.sql: the same tables and
-- backfill).
CREATE TABLE status_tally (
    account_id TEXT NOT NULL,
    span       BIGINT NOT NULL CHECK (span IN (60000, 3600000)),
    bucket     BIGINT NOT NULL,
    status     TEXT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (account_id, span, bucket, status)
);
CREATE INDEX status_tally_age ON status_tally (span, bucket);

CREATE TABLE status_tally_cursor (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    event_seq BIGINT NOT NULL
);

INSERT INTO status_tally (account_id, span, bucket, status, n)
SELECT m.account_id, s.span, h.at - h.at % s.span, h.status, COUNT(*)
FROM message_status_event AS h
JOIN message AS m ON m.message_id = h.message_id
CROSS JOIN (VALUES (60000::bigint), (3600000::bigint)) AS s (span)
WHERE h.at >= floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint - 32 * 86400000::bigint
GROUP BY m.account_id, s.span, h.at - h.at % s.span, h.status;
INSERT INTO status_tally_cursor (id, event_seq)
SELECT 1, COALESCE(MAX(event_seq), 0) FROM event;
