-- Serializes, across processes, holding receipts that matched no message (exclusive: $1 true)
-- with taking the held receipts of sends just recorded (shared: $1 false); see
-- `DeliverySql::guard_receipt_hand_over`. Released at commit.
SELECT CASE WHEN $1 THEN pg_advisory_xact_lock(7271001) ELSE pg_advisory_xact_lock_shared(7271001) END::text
