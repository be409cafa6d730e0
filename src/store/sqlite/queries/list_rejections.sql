-- Rejected rows of campaign ?1 after input position ?2, in input order, ?3 at most.
SELECT seq, phone_number, code, error FROM campaign_rejection
WHERE campaign_id = ?1 AND seq > ?2
ORDER BY seq
LIMIT +?3
