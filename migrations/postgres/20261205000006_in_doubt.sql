-- In-doubt attempts (issue 8). Same as the SQLite migration, with INTEGER -> BIGINT.

-- Set when a claim ends because its worker process died (its heartbeat went stale, or its
-- lease ran out) before it recorded the attempt's outcome: the provider may or may not have
-- the message, and only the provider can tell. The value is when the oldest such attempt
-- started (its claim), so a lookup knows from when to search. The next worker asks the
-- provider before sending again; the mark is cleared once an outcome is recorded. Claims
-- given back for ordinary reasons (shutdown, a paused campaign, a retry) never set it.
ALTER TABLE message ADD COLUMN in_doubt_since BIGINT;
