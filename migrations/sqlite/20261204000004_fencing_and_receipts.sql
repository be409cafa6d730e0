-- Lease fencing and durable receipts (issue 7).

-- Bumped by every claim and by every release of an orphaned claim: the fencing token. A
-- worker records an outcome only while the message still carries the token its claim got,
-- so one that stalled past its lease cannot overwrite the work of the message's new owner.
ALTER TABLE message ADD COLUMN claim_seq INTEGER NOT NULL DEFAULT 0;

-- Receipts that named a provider id no message carries yet: the provider's callback overtook
-- our own record of the send (or the id is not ours). They wait here, on disk, and are
-- applied in the transaction that records the send; the sweeper drops (and counts) the ones
-- nobody claims within an hour.
CREATE TABLE pending_receipt (
    pending_receipt_id  INTEGER PRIMARY KEY,
    provider            TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status              TEXT NOT NULL,
    at                  INTEGER NOT NULL,
    error_code          TEXT,
    error_message       TEXT,
    received_at         INTEGER NOT NULL
);
CREATE INDEX pending_receipt_ref ON pending_receipt (provider, provider_message_id);
CREATE INDEX pending_receipt_received ON pending_receipt (received_at);
