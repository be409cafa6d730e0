-- The PostgreSQL migration of the same name moves the status out of the message table's
-- indexes so that receipts update rows in place there. SQLite needs no such change: an
-- UPDATE writes only the indexes that read a column it sets, and a sent message is in
-- neither message_ready nor message_claimed_by, so a receipt writes no entry there (only a
-- campaign's message has its message_campaign entry, keyed by status, rewritten).
SELECT 1;
