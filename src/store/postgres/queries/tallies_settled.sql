-- Whether every transaction whose id is at or below $1 has finished: the snapshot's xmin
-- (the oldest transaction id still running, or one past the newest finished when none runs;
-- over the whole cluster) is above it.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint > $1
