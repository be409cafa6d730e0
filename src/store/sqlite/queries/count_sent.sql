-- Adds ?4 messages to the account's sent count for day ?5 (`messages_sent_today`).
INSERT INTO account_usage (account_id, day, accepted, sent) VALUES (?1, ?5, 0, ?4)
ON CONFLICT (account_id, day) DO UPDATE SET sent = sent + excluded.sent;
