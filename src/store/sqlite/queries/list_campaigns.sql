-- Account ?1's campaigns, newest first, created before campaign id ?2 (a cursor), ?3 at most.
SELECT campaign_id, name, status, pause_reason, template, channel, priority, sender_id,
       scheduled_at, created_at, started_at, finished_at, recipients_total,
       recipients_accepted, rejected, opted_out, estimated_cost, estimated_segments,
       skipped, last_seq,
       (SELECT count(*) FROM inbound_message AS i
        WHERE i.campaign_id = campaign.campaign_id) AS replies
FROM campaign
WHERE account_id = ?1 AND status <> 'loading' AND campaign_id < ?2
ORDER BY campaign_id DESC
LIMIT +?3
