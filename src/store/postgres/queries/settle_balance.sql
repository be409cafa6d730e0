-- Charges $2 to account $1 for messages handed to a provider at $3: the reservation becomes a
-- debit. First of three statements, in this order everywhere (account row, then its usage
-- row), so that no two transactions lock the two in opposite orders (as one statement with
-- data-modifying CTEs could: PostgreSQL runs those in no set order).
UPDATE account SET balance = balance - $2, reserved = reserved - $2, updated_at = $3
WHERE account_id = $1
