-- The key (and its account) whose SHA-256 is $1.
SELECT api_key_id, account_id, key_hash FROM api_key WHERE key_hash = $1
