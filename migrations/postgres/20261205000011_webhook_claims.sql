-- Fewer writes per webhook delivery (issue 9's benchmark: each event was written five times).
-- Same as the SQLite migration, with INTEGER -> BIGINT.

-- A claim's lease, apart from `due_at`: claiming no longer moves the row in the due index.
ALTER TABLE webhook_delivery ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
-- The latest attempt, on the delivery itself: a post that succeeds at once (nearly all of
-- them) writes no attempt row; `webhook_attempt` keeps the attempts that failed.
ALTER TABLE webhook_delivery ADD COLUMN last_attempt_at BIGINT;
ALTER TABLE webhook_delivery ADD COLUMN last_latency_ms BIGINT;
ALTER TABLE webhook_delivery ADD COLUMN last_response_status BIGINT;
ALTER TABLE webhook_delivery ADD COLUMN last_error TEXT;
