-- Adds counts to the minute and hour tallies: ?1 is a JSON array of
-- [account_id, minute_start, status, n] (the caller's count of the events it folded).
INSERT INTO status_tally (account_id, span, bucket, status, n)
SELECT c.value ->> 0, s.span, (c.value ->> 1) - (c.value ->> 1) % s.span, c.value ->> 2,
       SUM(c.value ->> 3)
FROM json_each(?1) AS c
CROSS JOIN (SELECT 60000 AS span UNION ALL SELECT 3600000) AS s
WHERE TRUE
GROUP BY 1, 2, 3, 4
ON CONFLICT (account_id, span, bucket, status) DO UPDATE SET n = n + excluded.n
