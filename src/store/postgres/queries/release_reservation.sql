-- Returns $1 of reserved balance to account $3 (a message that will never be sent).
UPDATE account SET reserved = reserved - $1, updated_at = $2 WHERE account_id = $3
