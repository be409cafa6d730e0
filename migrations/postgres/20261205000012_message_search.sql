-- Message search by campaign, newest first (PostgreSQL dialect of
-- migrations/sqlite/20261205000012_message_search.sql: the same index).
CREATE INDEX message_campaign_created ON message (campaign_id, created_at)
    WHERE campaign_id IS NOT NULL;
