-- A new account (tenant) with its opening balance and its webhook signing secret.
INSERT INTO account (account_id, name, currency, balance, reserved, daily_limit, created_at,
                     updated_at, webhook_secret)
VALUES ($1, $2, $3, $4, 0, $5, $6, $6, $7)
