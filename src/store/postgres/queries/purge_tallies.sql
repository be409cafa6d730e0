-- Forgets minute tallies ($3: a minute's span) that began before $1 and hour tallies ($4: an
-- hour's span) that began before $2 (a few hundred rows per account: a scan is cheap).
DELETE FROM status_tally
WHERE (span = $3 AND bucket < $1) OR (span = $4 AND bucket < $2)
