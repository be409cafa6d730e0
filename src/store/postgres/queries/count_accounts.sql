-- How many accounts exist (zero on first start: time to bootstrap).
SELECT COUNT(*) FROM account
