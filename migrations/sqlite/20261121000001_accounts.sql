-- Accounts (tenants), their API keys and the balance ledger.
-- Money columns count ten-thousandths of the account's currency (domain::Money); times are
-- Unix milliseconds (domain::Timestamp).

CREATE TABLE account (
    account_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    currency    TEXT NOT NULL,
    -- Settled balance: top-ups minus charges for messages handed to a provider.
    balance     INTEGER NOT NULL,
    -- Cost of accepted messages not yet settled or released. Available = balance - reserved.
    reserved    INTEGER NOT NULL DEFAULT 0,
    daily_limit INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Only a SHA-256 of each key is kept: keys are 192-bit random strings, so a fast hash is
-- enough (no password-style stretching needed) and lookups stay cheap on every request.
CREATE TABLE api_key (
    api_key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES account (account_id),
    key_hash   BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Every movement of `account.balance`, so a balance can always be explained.
-- Charges are written once per account per commit, covering `messages` messages.
CREATE TABLE balance_entry (
    balance_entry_id INTEGER PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES account (account_id),
    kind             TEXT NOT NULL CHECK (kind IN ('credit', 'charge')),
    amount           INTEGER NOT NULL,
    messages         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX balance_entry_account ON balance_entry (account_id, created_at);

-- Per-day counters behind the daily limit and `messages_sent_today`.
CREATE TABLE account_usage (
    account_id TEXT NOT NULL REFERENCES account (account_id),
    day        TEXT NOT NULL,
    accepted   INTEGER NOT NULL DEFAULT 0,
    sent       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
) WITHOUT ROWID;
