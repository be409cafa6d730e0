-- The status of each campaign id in JSON array $1.
SELECT c.campaign_id, c.status FROM jsonb_array_elements_text($1::jsonb) AS j (id)
JOIN campaign AS c ON c.campaign_id = j.id
