-- WhatsApp template messages (issue 8): the template a message is sent as, as JSON
-- {"name", "language", "variables": [...]}; NULL for every other message (SMS, WhatsApp text
-- and media). Nullable, so existing rows need no rewrite. Same as the SQLite migration (TEXT,
-- not jsonb: the value is stored and read back as a string on both dialects).
ALTER TABLE message ADD COLUMN whatsapp_template TEXT;
