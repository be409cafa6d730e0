-- Holds, across processes, the receipt hand-over guard exclusive, to hold receipts that
-- matched no message; mark_sent.sql holds it shared while sends are recorded and their held
-- receipts taken. See `DeliverySql::guard_receipt_hand_over`. Released at commit.
SELECT pg_advisory_xact_lock(7271001)::text
