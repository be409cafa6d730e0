-- Stages validated recipients of loading campaign $1, one row per element of the arrays.
INSERT INTO campaign_recipient (campaign_id, seq, phone_number, body, segments, cost)
SELECT $1, r.seq, r.phone_number, r.body, r.segments, r.cost
FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[])
    AS r (seq, phone_number, body, segments, cost)
