-- How many of an account's messages reached each status, per minute and per hour (PostgreSQL
-- dialect of migrations/sqlite/20261205000013_status_tally.sql: the same table, the trigger
-- as a PL/pgSQL function of the same name, the same backfill).
CREATE TABLE status_tally (
    account_id TEXT NOT NULL,
    span       BIGINT NOT NULL CHECK (span IN (60000, 3600000)),
    bucket     BIGINT NOT NULL,
    status     TEXT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (account_id, span, bucket, status)
);
CREATE INDEX status_tally_age ON status_tally (span, bucket);

CREATE FUNCTION message_status_event_is_tallied() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO status_tally (account_id, span, bucket, status, n)
    SELECT m.account_id, s.span, NEW.at - NEW.at % s.span, NEW.status, 1
    FROM message AS m CROSS JOIN (VALUES (60000::bigint), (3600000::bigint)) AS s (span)
    WHERE m.message_id = NEW.message_id
    ON CONFLICT (account_id, span, bucket, status) DO UPDATE SET n = status_tally.n + 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER message_status_event_is_tallied AFTER INSERT ON message_status_event
FOR EACH ROW EXECUTE FUNCTION message_status_event_is_tallied();

INSERT INTO status_tally (account_id, span, bucket, status, n)
SELECT m.account_id, s.span, h.at - h.at % s.span, h.status, COUNT(*)
FROM message_status_event AS h
JOIN message AS m ON m.message_id = h.message_id
CROSS JOIN (VALUES (60000::bigint), (3600000::bigint)) AS s (span)
WHERE h.at >= floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint - 32 * 86400000::bigint
GROUP BY m.account_id, s.span, h.at - h.at % s.span, h.status;
