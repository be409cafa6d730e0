-- Adds the status events numbered after $1 up to $2 to the minute ($3) and hour ($4)
-- tallies, counted per account, bucket and status (SQLite counts on a read connection and
-- adds a JSON array; here the transaction that moved the cursor counts and adds in one
-- statement).
INSERT INTO status_tally (account_id, span, bucket, status, n)
SELECT e.account_id, s.span, e.at - e.at % s.span, e.status, COUNT(*)
FROM event AS e
CROSS JOIN (VALUES ($3::bigint), ($4::bigint)) AS s (span)
WHERE e.event_seq > $1 AND e.event_seq <= $2 AND e.kind = 'message.status'
GROUP BY 1, 2, 3, 4
ON CONFLICT (account_id, span, bucket, status) DO UPDATE SET n = status_tally.n + EXCLUDED.n
