-- Stages validated recipients of a loading campaign; the writer repeats the VALUES tuple.
INSERT INTO campaign_recipient (campaign_id, seq, phone_number, body, segments, cost)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
