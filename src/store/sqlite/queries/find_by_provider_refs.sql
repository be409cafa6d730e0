-- Which of the provider ids in the JSON array ?2 some message of provider ?1 carries (the
-- receipts that matched no move: stale ones, as opposed to ones that overtook their send).
-- CROSS JOIN: the ids drive the index lookups, never the provider's whole history.
SELECT m.provider_message_id
FROM json_each(?2) AS v CROSS JOIN message AS m
WHERE m.provider = ?1 AND m.provider_message_id = v.value
