-- The next ?3 staged recipients of campaign ?1 after the checkpoint ?2, in input order.
SELECT seq, phone_number, body, segments, cost
FROM campaign_recipient
WHERE campaign_id = ?1 AND seq > ?2
ORDER BY seq
LIMIT ?3
