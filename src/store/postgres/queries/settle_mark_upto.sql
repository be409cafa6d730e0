-- The highest event number this statement's snapshot sees: every number up to it was handed
-- out before the snapshot was taken (the first half of a settle mark, see overview.rs).
SELECT COALESCE(MAX(event_seq), 0) FROM event
