-- Stores the SHA-256 of a new API key (never the key itself). Processes starting together
-- may register the same configured bootstrap key at once: the second changes nothing.
INSERT INTO api_key (api_key_id, account_id, key_hash, created_at, updated_at)
VALUES ($1, $2, $3, $4, $4)
ON CONFLICT (key_hash) DO NOTHING
