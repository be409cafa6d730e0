-- A transaction id of our own, assigned now: higher than the id of every transaction that
-- had one before this statement (the second half of a settle mark, see overview.rs).
SELECT pg_current_xact_id()::text::bigint
