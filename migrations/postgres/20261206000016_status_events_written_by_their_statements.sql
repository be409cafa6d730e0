-- A status event is written by the statement that adds the history row
-- (store/postgres/queries/insert_status_events.sql and fanout_insert.sql, each one statement
-- with the history insert in a WITH), not by a trigger on the history: no trigger function
-- per statement, and the account comes from the caller instead of a lookup per row. The rows
-- written are the same. The SQLite migration of the same name does the same.
DROP TRIGGER message_status_event_is_an_event ON message_status_event;
DROP FUNCTION message_status_event_is_an_event();
