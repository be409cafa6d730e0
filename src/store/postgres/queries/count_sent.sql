-- Adds $3 messages to account $1's sent count for day $2 (`messages_sent_today`).
INSERT INTO account_usage (account_id, day, accepted, sent) VALUES ($1, $2, 0, $3)
ON CONFLICT (account_id, day) DO UPDATE SET sent = account_usage.sent + excluded.sent
