-- Whether some account's WhatsApp credentials have this verify token (by its SHA-256).
SELECT EXISTS (SELECT 1 FROM provider_credential WHERE verify_token_sha256 = $1)
