-- Status callbacks in Twilio's format (the Twilio-compatible API's StatusCallback): the API
-- key that signs them, sealed with credentials.key for this message (`<key id>.<base64>`),
-- since Herald keeps only a hash of each key. NULL: the callback, if any, is Herald's JSON.
ALTER TABLE message ADD COLUMN twilio_callback_signer TEXT;
