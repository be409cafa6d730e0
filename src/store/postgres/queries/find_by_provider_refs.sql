-- Which of the provider ids in the JSON array $2 some message of provider $1 carries.
SELECT m.provider_message_id
FROM jsonb_array_elements_text($2::jsonb) AS v (ref)
JOIN message AS m ON m.provider = $1 AND m.provider_message_id = v.ref
