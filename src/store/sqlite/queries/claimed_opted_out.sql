-- Which of the just-claimed messages in JSON array ?1 go to a number that has since opted
-- out of the sending account. A message accepted after the opt-out went past the API's
-- check on purpose: the confirmation a STOP is answered with.
SELECT m.message_id FROM json_each(?1) AS c
JOIN message AS m ON m.message_id = c.value
JOIN opt_out AS o ON o.account_id = m.account_id AND o.phone_number = m.phone_number
WHERE o.created_at > m.created_at
