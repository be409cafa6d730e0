-- Moves the tally cursor from $1 to $2, only if it is still at $1: the fence that keeps two
-- folds from counting the same events (a fold that waited for another's lock sees the moved
-- cursor and updates nothing).
UPDATE status_tally_cursor SET event_seq = $2 WHERE id = 1 AND event_seq = $1
