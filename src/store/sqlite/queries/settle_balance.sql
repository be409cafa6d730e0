-- Charges ?2 to account ?1 for messages handed to a provider at ?3: the reservation becomes
-- a real debit. (Parameters shared with record_charge.sql and count_sent.sql, which the
-- writer sends with it as one command.)
UPDATE account SET balance = balance - ?2, reserved = reserved - ?2, updated_at = ?3
WHERE account_id = ?1;
