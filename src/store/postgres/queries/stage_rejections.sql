-- Records input rows of campaign $1 that will not be messaged, one per element of the
-- arrays. A row already recorded (a retried fan-out step) keeps its first reason.
INSERT INTO campaign_rejection (campaign_id, seq, phone_number, code, error)
SELECT $1, r.seq, r.phone_number, r.code, r.error
FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])
    AS r (seq, phone_number, code, error)
ON CONFLICT (campaign_id, seq) DO NOTHING
