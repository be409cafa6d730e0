-- Messages (also the delivery queue), their status history, idempotency keys and worker
-- instances. PostgreSQL dialect of the SQLite migration of the same name: INTEGER -> BIGINT,
-- BLOB -> BYTEA, WITHOUT ROWID tables are ordinary tables with the same primary key; the
-- partial indexes are the same.
--
-- Messages are also the delivery queue: a message row is its own job (no second table to
-- keep in step, nothing to re-enqueue after a crash). Workers claim due rows by priority
-- lane through `message_ready`.

CREATE TABLE message (
    message_id          TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL REFERENCES account (account_id),
    campaign_id         TEXT,
    channel             TEXT NOT NULL,
    phone_number        TEXT NOT NULL,
    sender_id           TEXT,
    body                TEXT NOT NULL,
    attachment_url      TEXT,
    -- 0 low, 1 normal, 2 high, 3 urgent.
    priority            BIGINT NOT NULL,
    status              TEXT NOT NULL,
    segments            BIGINT NOT NULL,
    cost                BIGINT NOT NULL,
    -- 'reserved' on accept, then 'settled' when sent or 'released' when it fails unsent.
    billing             TEXT NOT NULL CHECK (billing IN ('reserved', 'settled', 'released')),
    provider            TEXT,
    provider_message_id TEXT,
    error_code          TEXT,
    error_message       TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    -- Earliest time of the next delivery attempt (scheduled_at, or a retry's backoff).
    due_at              BIGINT NOT NULL,
    -- A claimed message belongs to `claimed_by` until `lease_until`.
    lease_until         BIGINT NOT NULL DEFAULT 0,
    claimed_by          TEXT,
    expires_at          BIGINT NOT NULL,
    status_callback     TEXT,
    metadata            TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- The queue: only undelivered rows are in this index, so it stays as small as the backlog.
CREATE INDEX message_ready ON message (priority, due_at)
    WHERE status IN ('queued', 'sending');
CREATE INDEX message_account_created ON message (account_id, created_at);
CREATE INDEX message_provider_ref ON message (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX message_claimed_by ON message (claimed_by)
    WHERE status = 'sending';

-- The history of a message: each status at most once (the primary key says so).
CREATE TABLE message_status_event (
    message_id TEXT NOT NULL REFERENCES message (message_id),
    status     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (message_id, status)
);

-- Responses kept for 24 hours so a retried request replays instead of sending again.
CREATE TABLE idempotency_key (
    account_id      TEXT NOT NULL REFERENCES account (account_id),
    idempotency_key TEXT NOT NULL,
    request_hash    BYTEA NOT NULL,
    response_status BIGINT NOT NULL,
    response_body   TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (account_id, idempotency_key)
);
CREATE INDEX idempotency_key_created ON idempotency_key (created_at);

-- Worker processes and their last heartbeat: a silent one's claims are released.
CREATE TABLE worker_instance (
    instance_id  TEXT PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
