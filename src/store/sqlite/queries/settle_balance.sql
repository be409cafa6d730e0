-- Charges ?1 for messages handed to a provider: the reservation becomes a real debit.
UPDATE account SET balance = balance - ?1, reserved = reserved - ?1, updated_at = ?2
WHERE account_id = ?3
