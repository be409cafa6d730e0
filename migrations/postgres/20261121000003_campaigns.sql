-- Campaigns, their recipient lists, opt-outs and named templates. PostgreSQL dialect of the
-- SQLite migration of the same name: INTEGER -> BIGINT, WITHOUT ROWID tables are ordinary
-- tables with the same primary key; constraints and indexes are the same.

-- A campaign is created in status 'loading' while its list streams in (invisible to reads),
-- then becomes 'scheduled' or 'running'. The workers expand `campaign_recipient` into
-- messages in batches; `fanned_out` is the checkpoint (the highest `seq` expanded), written
-- in the same transaction as the messages, so a crash neither loses nor repeats anyone.
CREATE TABLE campaign (
    campaign_id         TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL REFERENCES account (account_id),
    name                TEXT NOT NULL,
    template            TEXT NOT NULL,
    channel             TEXT NOT NULL,
    -- 0 low, 1 normal, 2 high, 3 urgent (as message.priority).
    priority            BIGINT NOT NULL,
    sender_id           TEXT,
    status              TEXT NOT NULL CHECK (status IN
                            ('loading', 'scheduled', 'running', 'paused', 'completed', 'canceled')),
    -- Why a paused campaign stopped: 'requested', 'insufficient_balance', 'daily_limit_exceeded'.
    pause_reason        TEXT,
    scheduled_at        BIGINT NOT NULL,
    recipients_total    BIGINT NOT NULL DEFAULT 0,
    recipients_accepted BIGINT NOT NULL DEFAULT 0,
    rejected            BIGINT NOT NULL DEFAULT 0,
    -- Recipients skipped because they opted out (at creation or at fan-out).
    opted_out           BIGINT NOT NULL DEFAULT 0,
    -- Of those, the ones the fan-out skipped (they opted out after the list was loaded).
    skipped             BIGINT NOT NULL DEFAULT 0,
    estimated_cost      BIGINT NOT NULL DEFAULT 0,
    estimated_segments  BIGINT NOT NULL DEFAULT 0,
    -- Fan-out checkpoint: every recipient with seq <= fanned_out has been expanded.
    fanned_out          BIGINT NOT NULL DEFAULT -1,
    -- The highest seq of the list, so the fan-out knows when it is done.
    last_seq            BIGINT NOT NULL DEFAULT -1,
    created_at          BIGINT NOT NULL,
    started_at          BIGINT,
    finished_at         BIGINT,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX campaign_account ON campaign (account_id, created_at);
CREATE INDEX campaign_active ON campaign (status) WHERE status IN ('loading', 'scheduled', 'running');

-- The validated list: one row per accepted recipient, already rendered and priced, so the
-- estimate shown before launch is exactly what the fan-out charges. `seq` is the
-- recipient's position in the input (0-based), shared with `campaign_rejection`.
CREATE TABLE campaign_recipient (
    campaign_id  TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    phone_number TEXT NOT NULL,
    body         TEXT NOT NULL,
    segments     BIGINT NOT NULL,
    cost         BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, seq)
);

-- Every input row that will not be messaged, and why (invalid number, template error,
-- duplicate, opted out).
CREATE TABLE campaign_rejection (
    campaign_id  TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    phone_number TEXT NOT NULL,
    code         TEXT NOT NULL,
    error        TEXT NOT NULL,
    PRIMARY KEY (campaign_id, seq)
);

-- Numbers that asked this account to stop messaging them (SPEC §7).
CREATE TABLE opt_out (
    account_id   TEXT NOT NULL REFERENCES account (account_id),
    phone_number TEXT NOT NULL,
    source       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, phone_number)
);

-- Templates an account added through the API (files in templates/ are shared by all).
CREATE TABLE message_template (
    account_id TEXT NOT NULL REFERENCES account (account_id),
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- A campaign's messages by status: live counters (covering, with cost), and pausing,
-- resuming and canceling without touching other messages. Partial: single sends without a
-- campaign pay nothing for it.
CREATE INDEX message_campaign ON message (campaign_id, status, due_at, cost)
    WHERE campaign_id IS NOT NULL;
