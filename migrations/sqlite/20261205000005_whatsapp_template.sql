-- WhatsApp template messages (issue 8): the template a message is sent as, as JSON
-- {"name", "language", "variables": [...]}; NULL for every other message (SMS, WhatsApp text
-- and media). Nullable, so existing rows need no rewrite.
ALTER TABLE message ADD COLUMN whatsapp_template TEXT;
