-- Forgets minute tallies that began before ?1 and hour tallies that began before ?2 (the
-- table holds a few hundred rows per account, so a scan is cheap).
DELETE FROM status_tally
WHERE (span = 60000 AND bucket < ?1) OR (span = 3600000 AND bucket < ?2)
