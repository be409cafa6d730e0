-- Writes an account's credentials for a provider, unless another account holds the same
-- provider account or number (then nothing is written: 0 rows).
INSERT INTO provider_credential
    (account_id, provider, webhook_key, public, sealed, key_id, verify_token_sha256,
     created_at, updated_at)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8
WHERE NOT EXISTS (
    SELECT 1 FROM provider_credential
    WHERE provider = ?2 AND webhook_key = ?3 AND account_id <> ?1
)
ON CONFLICT (account_id, provider) DO UPDATE SET
    webhook_key = excluded.webhook_key,
    public = excluded.public,
    sealed = excluded.sealed,
    key_id = excluded.key_id,
    verify_token_sha256 = excluded.verify_token_sha256,
    updated_at = excluded.updated_at
