-- An endpoint that worked (accounts in the JSON array $1) is healthy again; one that failed
-- (accounts in $2) is failing since $3 unless it already was. The two sets are disjoint.
WITH recovered AS (
    UPDATE account SET webhook_failing_since = NULL
    WHERE account_id IN (SELECT jsonb_array_elements_text($1::jsonb))
      AND webhook_failing_since IS NOT NULL
)
UPDATE account SET webhook_failing_since = $3
WHERE account_id IN (SELECT jsonb_array_elements_text($2::jsonb))
  AND webhook_failing_since IS NULL
