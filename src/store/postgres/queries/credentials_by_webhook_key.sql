-- The credentials whose webhooks name $2 (a Twilio AccountSid, a WhatsApp phone number id).
SELECT account_id, provider, webhook_key, public, sealed, key_id, verify_token_sha256,
       created_at, updated_at
FROM provider_credential
WHERE provider = $1 AND webhook_key = $2
