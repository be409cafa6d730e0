-- Copies what it can of the WAL into the database without waiting for the writer or readers.
PRAGMA wal_checkpoint(PASSIVE)
