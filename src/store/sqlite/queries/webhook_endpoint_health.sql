-- After a round of attempts at accounts' webhooks: ?1 the accounts with a success (the
-- endpoint works), ?2 those whose attempts all failed (failing since now, if not already).
-- Then disables the endpoints failing since before ?4 and answers their accounts.
UPDATE account SET webhook_failing_since = NULL
WHERE account_id IN (SELECT value FROM json_each(?1)) AND webhook_failing_since IS NOT NULL;
UPDATE account SET webhook_failing_since = ?3
WHERE account_id IN (SELECT value FROM json_each(?2)) AND webhook_failing_since IS NULL;
