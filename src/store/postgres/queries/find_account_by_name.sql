-- An account by id or by name.
SELECT account_id FROM account WHERE account_id = $1 OR name = $1
