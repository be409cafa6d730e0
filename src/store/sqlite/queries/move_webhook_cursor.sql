-- Every event up to ?1 has been handed to the webhooks (it never moves back).
UPDATE webhook_cursor SET event_seq = MAX(event_seq, ?1) WHERE id = 1
