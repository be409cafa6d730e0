-- Inbound messages and threads (issue 9). PostgreSQL dialect of the SQLite migration of the
-- same name: INTEGER -> BIGINT; constraints and indexes (including the partial ones) are the
-- same.

-- A conversation: one account, one channel, one remote number. Made by the first inbound
-- message from that number; outbound messages to the number show in it by the number (no
-- thread row is written when sending, so a million-recipient campaign makes no threads).
CREATE TABLE thread (
    thread_id       TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES account (account_id),
    channel         TEXT NOT NULL,
    phone_number    TEXT NOT NULL,
    -- The last inbound message: its text and time.
    last_inbound    TEXT NOT NULL,
    last_inbound_at BIGINT NOT NULL,
    unread_count    BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    UNIQUE (account_id, channel, phone_number)
);
CREATE INDEX thread_account_recent ON thread (account_id, last_inbound_at);

-- A message a handset sent. Same id space as outbound messages (`msg_…`).
CREATE TABLE inbound_message (
    message_id          TEXT PRIMARY KEY,
    -- NULL: no account owns the number it came to (kept, counted as unroutable).
    account_id          TEXT REFERENCES account (account_id),
    thread_id           TEXT REFERENCES thread (thread_id),
    channel             TEXT NOT NULL,
    -- Where it came from: `api` (POST /sms/receive), `twilio`, `whatsapp_cloud`, `mock`.
    provider            TEXT NOT NULL,
    -- The provider's id; a provider's retry of the same message carries the same one.
    provider_message_id TEXT,
    from_number         TEXT NOT NULL,
    to_number           TEXT,
    body                TEXT NOT NULL,
    -- JSON array of media URLs, or NULL.
    media_urls          TEXT,
    -- `stop`, `start` or `help` when the message was that keyword (SPEC §7).
    keyword             TEXT,
    -- The last outbound message to that number before this one, and its campaign.
    in_reply_to         TEXT,
    campaign_id         TEXT,
    read_at             BIGINT,
    received_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX inbound_provider_ref ON inbound_message (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX inbound_thread ON inbound_message (thread_id, received_at);
CREATE INDEX inbound_campaign ON inbound_message (campaign_id) WHERE campaign_id IS NOT NULL;

-- Outbound messages by recipient: a reply finds the message it answers (and its account
-- and campaign), and a thread lists what was sent to its number.
CREATE INDEX message_recipient ON message (phone_number, created_at);
