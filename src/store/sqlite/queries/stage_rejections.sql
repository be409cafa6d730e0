-- Records input rows that will not be messaged; the writer repeats the VALUES tuple. A row
-- already recorded (a retried fan-out step) keeps its first reason.
INSERT INTO campaign_rejection (campaign_id, seq, phone_number, code, error)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (campaign_id, seq) DO NOTHING
