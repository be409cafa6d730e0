-- Opts number $2 back in to account $1.
DELETE FROM opt_out WHERE account_id = $1 AND phone_number = $2
