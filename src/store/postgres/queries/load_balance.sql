-- Available balance and today's counters ($2 is today's UTC day) of account $1.
SELECT a.balance - a.reserved AS available, a.currency, a.daily_limit,
       COALESCE(u.sent, 0) AS sent_today, COALESCE(u.accepted, 0) AS accepted_today
FROM account AS a
LEFT JOIN account_usage AS u ON u.account_id = a.account_id AND u.day = $2
WHERE a.account_id = $1
