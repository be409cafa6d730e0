-- Whether number $2 opted out of account $1.
SELECT phone_number FROM opt_out WHERE account_id = $1 AND phone_number = $2
