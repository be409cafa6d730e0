-- Account $1's own answers to STOP and HELP (NULL: the deployment's).
SELECT stop_reply, help_reply FROM account WHERE account_id = $1
