-- Account $1's available balance, daily limit, messages accepted on day $2 and whether it has
-- any opt-out. An accept reads them with the account row locked until the transaction ends
-- (`FOR UPDATE OF a` added in accept.rs): every accept and every top-up of the account, in
-- any process, waits there, so none decides on figures another is changing. A fan-out step
-- plans with them unlocked and checks its plan under the lock at its end (campaign.rs).
SELECT a.balance - a.reserved AS available,
       a.daily_limit AS daily_limit,
       COALESCE(u.accepted, 0) AS accepted_today,
       EXISTS (SELECT 1 FROM opt_out AS o WHERE o.account_id = a.account_id) AS any_opt_out
FROM account AS a
LEFT JOIN account_usage AS u ON u.account_id = a.account_id AND u.day = $2
WHERE a.account_id = $1
