-- The last event folded into the status tallies.
SELECT event_seq FROM status_tally_cursor WHERE id = 1
