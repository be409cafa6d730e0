-- Message search by campaign, newest first (GET /messages?campaign_id=…, a campaign's CSV
-- export): without it a campaign sent last month is found by walking every newer message.
-- created_at never changes, so the index costs one entry per campaign message and no
-- updates.
CREATE INDEX message_campaign_created ON message (campaign_id, created_at)
    WHERE campaign_id IS NOT NULL;
