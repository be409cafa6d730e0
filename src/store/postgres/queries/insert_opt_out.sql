-- Opts number $2 out of account $1; an existing opt-out keeps its first time and source.
INSERT INTO opt_out (account_id, phone_number, source, created_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id, phone_number) DO NOTHING
