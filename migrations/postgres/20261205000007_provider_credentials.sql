-- Provider credentials an account set for itself (issue 8): its messages on the provider's
-- channel go out with these instead of the deployment's. PostgreSQL dialect of the SQLite
-- migration of the same name: INTEGER -> BIGINT, BLOB -> BYTEA, WITHOUT ROWID dropped (same
-- primary key); the indexes are the same.

CREATE TABLE provider_credential (
    account_id   TEXT NOT NULL REFERENCES account (account_id),
    -- `twilio` or `whatsapp_cloud`.
    provider     TEXT NOT NULL,
    -- Whose webhooks these are: the Twilio AccountSid, or the WhatsApp phone number id. A
    -- webhook names it, which finds the account and so the secret its signature is checked
    -- with; one provider account belongs to one Herald account.
    webhook_key  TEXT NOT NULL,
    -- What may be shown back (senders and their rates), as JSON.
    public       TEXT NOT NULL,
    -- The secrets, as JSON sealed with credentials.key (nonce, ciphertext, tag); never shown.
    sealed       BYTEA NOT NULL,
    -- Which credentials.key sealed them (a short hash, not the key).
    key_id       TEXT NOT NULL,
    -- SHA-256 of the WhatsApp verify token, which Meta's verification GET names alone.
    verify_token_sha256 BYTEA,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, provider)
);

CREATE UNIQUE INDEX provider_credential_webhook_key ON provider_credential (provider, webhook_key);
CREATE INDEX provider_credential_verify_token ON provider_credential (verify_token_sha256)
    WHERE verify_token_sha256 IS NOT NULL;
