-- Status events numbered after ?1 up to ?2, counted per account, minute and status.
SELECT account_id, at - at % 60000 AS minute, status, COUNT(*) AS n
FROM event
WHERE event_seq > ?1 AND event_seq <= ?2 AND kind = 'message.status'
GROUP BY account_id, minute, status
