-- Writes an account's credentials for a provider, unless another account holds the same
-- provider account or number (then nothing is written: 0 rows). Two accounts saving the
-- same one at once both pass NOT EXISTS; the unique index on (provider, webhook_key) then
-- refuses the second, which the caller reads as taken.
INSERT INTO provider_credential
    (account_id, provider, webhook_key, public, sealed, key_id, verify_token_sha256,
     created_at, updated_at)
SELECT $1::text, $2::text, $3::text, $4::text, $5::bytea, $6::text, $7::bytea, $8::bigint,
       $8::bigint
WHERE NOT EXISTS (
    SELECT 1 FROM provider_credential
    WHERE provider = $2 AND webhook_key = $3 AND account_id <> $1
)
ON CONFLICT (account_id, provider) DO UPDATE SET
    webhook_key = excluded.webhook_key,
    public = excluded.public,
    sealed = excluded.sealed,
    key_id = excluded.key_id,
    verify_token_sha256 = excluded.verify_token_sha256,
    updated_at = excluded.updated_at
