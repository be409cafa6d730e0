-- Removes an account's credentials for a provider.
DELETE FROM provider_credential WHERE account_id = $1 AND provider = $2
