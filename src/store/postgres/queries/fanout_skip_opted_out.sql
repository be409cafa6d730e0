-- Records the recipients of campaign $1 with seq in ($2, $3] whose number opted out of
-- account $4 as skipped; returns how many.
INSERT INTO campaign_rejection (campaign_id, seq, phone_number, code, error)
SELECT $1, r.seq, r.phone_number, 'recipient_opted_out',
       'the recipient opted out of messages from this account'
FROM campaign_recipient AS r
JOIN opt_out AS o ON o.account_id = $4 AND o.phone_number = r.phone_number
WHERE r.campaign_id = $1 AND r.seq > $2 AND r.seq <= $3
ON CONFLICT (campaign_id, seq) DO NOTHING
