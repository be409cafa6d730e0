-- An account's credentials: for one provider ($2), or for all ($2 NULL).
SELECT account_id, provider, webhook_key, public, sealed, key_id, verify_token_sha256,
       created_at, updated_at
FROM provider_credential
WHERE account_id = $1 AND ($2::text IS NULL OR provider = $2)
ORDER BY provider
