-- Status callbacks in Twilio's format (PostgreSQL dialect of
-- migrations/sqlite/20261205000014_twilio_status_callback.sql: the same column).
ALTER TABLE message ADD COLUMN twilio_callback_signer TEXT;
