-- Account $1's messages waiting or being handed over, per priority (the rows the partial
-- index message_ready holds: reserved is queued or sending, see the migration
-- receipts_update_in_place).
SELECT priority, COUNT(*) AS waiting FROM message
WHERE billing = 'reserved' AND account_id = $1
GROUP BY priority
