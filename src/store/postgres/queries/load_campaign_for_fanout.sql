-- What the fan-out of campaign $1 needs: its owner, state, message settings and checkpoint.
-- The row stays locked until the step commits: a step in another process waits and then
-- starts from the checkpoint this one moved, and a pause or cancel waits for the step.
SELECT account_id, status, channel, priority, sender_id, fanned_out, last_seq
FROM campaign WHERE campaign_id = $1
FOR UPDATE
