-- A receipt (sent -> delivered -> read) changes a message's status, error and updated_at.
-- While an index read the status (message_ready's and message_claimed_by's conditions,
-- message_campaign's key), each receipt wrote a new entry in every index of the table; now
-- that none does, PostgreSQL can write the new row version beside the old one with no index
-- entries at all (a heap-only update; BENCHMARKS.md, "Receipts update in place").
--
-- The queue's indexes select by billing instead: a message is queued or sending exactly
-- while its cost is reserved (accepted reserved; sent settles it, a failure or a cancel
-- releases it), and the constraint keeps it so.
ALTER TABLE message ADD CONSTRAINT message_reserved_while_waiting
    CHECK ((billing = 'reserved') = (status IN ('queued', 'sending')));

DROP INDEX message_ready;
CREATE INDEX message_ready ON message (priority, due_at) WHERE billing = 'reserved';

-- Only a claim sets claimed_by, and every end of a claim clears it.
DROP INDEX message_claimed_by;
CREATE INDEX message_claimed_by ON message (claimed_by) WHERE claimed_by IS NOT NULL;

DROP INDEX message_campaign;
CREATE INDEX message_campaign ON message (campaign_id, billing, due_at, cost)
    WHERE campaign_id IS NOT NULL;

-- Room on each page for the receipts' row versions: a heap-only update needs it on the same
-- page, and a claim's and a send's versions (which are not heap-only) take some first.
-- Measured in pg-dispatch: 27 % of the table's updates heap-only at fillfactor 80, 43 % at
-- 60, 49 % at 40 (two of a message's four updates are receipts: 50 % would be all of them);
-- WAL per message 5.2, 4.6 and 4.2 KB at 80, 60 and 40, against 6.1 before. At 40 an
-- accepted message takes 1.6 times the space until its receipts fill it. (Pages written from
-- now on; existing ones keep theirs until rewritten.)
ALTER TABLE message SET (fillfactor = 40);
