-- Messages of provider ?1 still `sent` whose last change is after the cursor (?2 ms, ?3 id)
-- and no later than ?4 ms, oldest first, at most ?5: those past their provider's receipt
-- time, for reconciliation. Read-only; the keyset cursor lets a pass go through them all.
SELECT message_id, account_id, provider_message_id, updated_at
FROM message
WHERE provider = ?1
  AND provider_message_id IS NOT NULL
  AND status = 'sent'
  AND (updated_at, message_id) > (?2, ?3)
  AND updated_at <= ?4
ORDER BY updated_at, message_id
LIMIT +?5
