-- Holds ?2 of account ?1's balance at ?3 for accepted messages until they are settled or
-- released. (Parameters shared with count_accepted.sql, sent with it as one command.)
UPDATE account SET reserved = reserved + ?2, updated_at = ?3 WHERE account_id = ?1;
