-- Which of the numbers in JSON array $2 opted out of account $1.
SELECT o.phone_number
FROM jsonb_array_elements_text($2::jsonb) AS n (phone_number)
JOIN opt_out AS o ON o.account_id = $1 AND o.phone_number = n.phone_number
