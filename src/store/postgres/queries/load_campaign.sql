-- Campaign $1 of account $2, unless it is still loading.
SELECT campaign_id, name, status, pause_reason, template, channel, priority, sender_id,
       scheduled_at, created_at, started_at, finished_at, recipients_total,
       recipients_accepted, rejected, opted_out, estimated_cost, estimated_segments,
       skipped, last_seq,
       (SELECT count(*) FROM inbound_message AS i
        WHERE i.campaign_id = campaign.campaign_id) AS replies
FROM campaign
WHERE campaign_id = $1 AND account_id = $2 AND status <> 'loading'
