-- Account ?1's opted-out numbers after ?2 (a cursor), in number order, ?3 at most.
SELECT phone_number, source, created_at FROM opt_out
WHERE account_id = ?1 AND phone_number > ?2
ORDER BY phone_number
LIMIT +?3
