-- Plans one fan-out step of campaign ?1 (account ?2) after checkpoint ?3: of the next ?4
-- recipients, which a balance of ?5 and ?6 more messages today can pay for, in order,
-- skipping numbers that opted out. One row: the window's last seq, the last affordable seq,
-- how many messages and what cost that is, and whether a recipient had to be left out.
WITH win AS (
    SELECT r.seq, r.cost,
           EXISTS (SELECT 1 FROM opt_out AS o
                   WHERE o.account_id = ?2 AND o.phone_number = r.phone_number) AS opted
    FROM campaign_recipient AS r
    WHERE r.campaign_id = ?1 AND r.seq > ?3
    ORDER BY r.seq
    LIMIT +?4
),
priced AS (
    SELECT seq, cost,
           SUM(cost) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS running,
           ROW_NUMBER() OVER (ORDER BY seq) AS k
    FROM win WHERE NOT opted
),
refused AS (
    SELECT MIN(seq) AS seq FROM priced WHERE running > ?5 OR k > ?6
)
SELECT (SELECT MAX(seq) FROM win) AS window_end,
       (SELECT seq FROM refused) AS first_refused,
       (SELECT COUNT(*) FROM priced
        WHERE seq < COALESCE((SELECT seq FROM refused), 9223372036854775807)) AS messages,
       (SELECT COALESCE(SUM(cost), 0) FROM priced
        WHERE seq < COALESCE((SELECT seq FROM refused), 9223372036854775807)) AS cost
