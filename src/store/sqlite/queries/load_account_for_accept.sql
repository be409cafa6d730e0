-- The figures accepting a message is checked against: available balance, daily limit, how
-- many messages the account already had accepted on day ?2, and whether it has any opt-out
-- at all (most have none: that skips the per-number lookups).
SELECT a.balance - a.reserved AS available,
       a.daily_limit AS daily_limit,
       COALESCE(u.accepted, 0) AS accepted_today,
       EXISTS (SELECT 1 FROM opt_out AS o WHERE o.account_id = a.account_id) AS any_opt_out
FROM account AS a
LEFT JOIN account_usage AS u ON u.account_id = a.account_id AND u.day = ?2
WHERE a.account_id = ?1
