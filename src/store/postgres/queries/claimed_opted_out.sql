-- Which of the just-claimed messages in JSON array $1 go to a number that has since opted
-- out of the sending account.
SELECT m.message_id FROM jsonb_array_elements_text($1::jsonb) AS c (id)
JOIN message AS m ON m.message_id = c.id
JOIN opt_out AS o ON o.account_id = m.account_id AND o.phone_number = m.phone_number
WHERE o.created_at > m.created_at
