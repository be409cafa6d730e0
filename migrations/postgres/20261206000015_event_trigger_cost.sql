-- The status-event and webhook-outbox triggers, once per statement instead of once per row.
-- They write exactly the rows the row triggers of 20261205000010 wrote. SQLite has only row
-- triggers: its migration of the same name makes each row's work cheaper instead.
--
-- Why: a PL/pgSQL row trigger pays a function call and an executor start for each of its
-- statements on every row, and every message gets about five history rows, each an event.
-- Measured on an empty database with every migration applied, 40,000 messages through five
-- statuses in statements of 200 (server side, one PL/pgSQL loop): 12–13 s with the row
-- triggers, 5.9–6.3 s with these, 2.3 s with no event trigger at all.
--
-- How the statements are shaped, and why:
-- * A transition table has no statistics (the planner guesses 810 rows), so a join from it
--   to `message` or `account` can become a hash join over the whole table. Every lookup is
--   therefore a scalar subquery on the primary key, which the planner keeps as a per-row
--   index probe, as the row triggers did.
-- * For the same reason a cost estimate can be large, and PostgreSQL would compile the
--   statement with JIT on every call (hundreds of milliseconds); `SET jit = off` on the two
--   functions rules that out.
-- * AFTER STATEMENT triggers run where the AFTER ROW triggers ran (at the end of the
--   statement), so an event's transaction still holds its id before the event's number is
--   handed out (store/postgres/overview.rs relies on that), and the previous status still
--   sees every history row of the statement.
-- * The outbox rows keep the row triggers' order: per event, the account's webhook first,
--   then the message's status_callback.

DROP TRIGGER message_status_event_is_an_event ON message_status_event;
DROP FUNCTION message_status_event_is_an_event();
CREATE FUNCTION message_status_event_is_an_event() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    INSERT INTO event (account_id, kind, message_id, status, previous_status, at, created_at)
    SELECT (SELECT m.account_id FROM message AS m WHERE m.message_id = n.message_id),
           'message.status', n.message_id, n.status,
           (SELECT h.status FROM message_status_event AS h
            WHERE h.message_id = n.message_id
              AND (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
                < (CASE n.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END)
            ORDER BY (CASE h.status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                      WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 5 END) DESC
            LIMIT 1),
           n.at, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint
    FROM new_statuses AS n;
    RETURN NULL;
END;
$$;
CREATE TRIGGER message_status_event_is_an_event AFTER INSERT ON message_status_event
REFERENCING NEW TABLE AS new_statuses
FOR EACH STATEMENT EXECUTE FUNCTION message_status_event_is_an_event();

DROP TRIGGER event_is_delivered ON event;
DROP FUNCTION event_is_delivered();
CREATE FUNCTION event_is_delivered() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    INSERT INTO webhook_delivery (event_seq, account_id, target, state, due_at, created_at)
    SELECT n.event_seq, n.account_id, t.target, 'pending', n.created_at, n.created_at
    FROM new_events AS n
    CROSS JOIN (VALUES (0, 'webhook'), (1, 'status_callback')) AS t (rank, target)
    WHERE CASE t.target
          WHEN 'webhook' THEN (
              SELECT a.webhook_url IS NOT NULL AND a.webhook_enabled = 1
              FROM account AS a WHERE a.account_id = n.account_id)
          ELSE n.kind = 'message.status' AND (
              SELECT m.status_callback IS NOT NULL
              FROM message AS m WHERE m.message_id = n.message_id)
          END
    ORDER BY n.event_seq, t.rank;
    RETURN NULL;
END;
$$;
CREATE TRIGGER event_is_delivered AFTER INSERT ON event
REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT EXECUTE FUNCTION event_is_delivered();
