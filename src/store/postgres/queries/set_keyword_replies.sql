-- Sets account $1's answers to STOP ($2) and HELP ($3); NULL goes back to the deployment's.
UPDATE account SET stop_reply = $2, help_reply = $3, updated_at = $4 WHERE account_id = $1
