-- Every opted-out number of account $1 (for validating a campaign's list in one pass).
SELECT phone_number FROM opt_out WHERE account_id = $1
