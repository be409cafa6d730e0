-- The status of each campaign id in JSON array ?1.
SELECT c.campaign_id, c.status FROM json_each(?1) AS j
JOIN campaign AS c ON c.campaign_id = j.value
