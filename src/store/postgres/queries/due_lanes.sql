-- Whether each priority lane (urgent 3, high 2, normal 1, low 0) has a message claimable at
-- $1 (the condition of claim_lane.sql: reserved is queued or sending), and whether any account
-- has any opt-out.
SELECT
    EXISTS (SELECT 1 FROM message WHERE billing = 'reserved' AND priority = 3
            AND due_at <= $1 AND lease_until <= $1) AS urgent,
    EXISTS (SELECT 1 FROM message WHERE billing = 'reserved' AND priority = 2
            AND due_at <= $1 AND lease_until <= $1) AS high,
    EXISTS (SELECT 1 FROM message WHERE billing = 'reserved' AND priority = 1
            AND due_at <= $1 AND lease_until <= $1) AS normal,
    EXISTS (SELECT 1 FROM message WHERE billing = 'reserved' AND priority = 0
            AND due_at <= $1 AND lease_until <= $1) AS low,
    EXISTS (SELECT 1 FROM opt_out) AS any_opt_out
