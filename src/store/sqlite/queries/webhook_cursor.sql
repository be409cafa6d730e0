-- Where the webhooks' reading of the event log resumes.
SELECT event_seq FROM webhook_cursor WHERE id = 1
