-- Stores an accepted message of account ?2, its own delivery job: `message_ready` picks it
-- up once due_at passes. The writer sends many rows at once, repeating this VALUES tuple
-- (multi-row VALUES is the fastest insert SQLite has: no per-row statement, no JSON).
INSERT INTO message (
    message_id, account_id, campaign_id, channel, phone_number, sender_id, body,
    attachment_url, priority, status, segments, cost, billing, due_at, expires_at,
    status_callback, metadata, created_at, updated_at, whatsapp_template, twilio_callback_signer
)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11, 'reserved', ?12, ?13, ?14, ?15,
        ?16, ?16, ?17, ?18)
