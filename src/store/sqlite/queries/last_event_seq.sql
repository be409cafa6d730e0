-- The newest event's sequence number (0 when the log is empty): where a new stream starts.
SELECT COALESCE(MAX(event_seq), 0) FROM event
