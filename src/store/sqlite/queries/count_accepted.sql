-- Adds ?5 messages to the account's accepted count for day ?4 (the daily limit's counter).
INSERT INTO account_usage (account_id, day, accepted, sent) VALUES (?1, ?4, ?5, 0)
ON CONFLICT (account_id, day) DO UPDATE SET accepted = accepted + excluded.accepted;
