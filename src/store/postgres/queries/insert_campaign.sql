-- Creates campaign $1 in status 'loading': invisible to reads until its list is staged.
INSERT INTO campaign (
    campaign_id, account_id, name, template, channel, priority, sender_id, status,
    scheduled_at, created_at, updated_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'loading', $8, $9, $9)
