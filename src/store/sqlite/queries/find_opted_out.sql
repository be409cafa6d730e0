-- Which of the numbers in JSON array ?2 opted out of account ?1.
SELECT o.phone_number FROM json_each(?2) AS n
JOIN opt_out AS o ON o.account_id = ?1 AND o.phone_number = n.value
