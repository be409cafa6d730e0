-- Holds ?1 of the balance for accepted messages until they are settled or released.
UPDATE account SET reserved = reserved + ?1, updated_at = ?2 WHERE account_id = ?3
