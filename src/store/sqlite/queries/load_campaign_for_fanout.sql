-- What the fan-out of campaign ?1 needs: its owner, state, message settings and checkpoint.
SELECT account_id, status, channel, priority, sender_id, fanned_out, last_seq
FROM campaign WHERE campaign_id = ?1
