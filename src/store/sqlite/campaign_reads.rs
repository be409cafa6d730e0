//! Reads for campaigns, opt-outs, templates and statistics, served by the read pool.

use crate::domain::{
    AccountId, CampaignId, CampaignStatus, Channel, MessageStatus, Money, PauseReason, Priority,
    Timestamp,
};
use crate::store::{
    ActiveCampaign, CampaignCounts, CampaignTotals, CampaignView, OptOut, Rejection, StatsRow,
    StoreResult, StoredTemplate,
};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use std::collections::HashSet;

fn campaign_view(row: &SqliteRow) -> sqlx::Result<CampaignView> {
    let status: String = row.try_get("status")?;
    let reason: Option<String> = row.try_get("pause_reason")?;
    let channel: String = row.try_get("channel")?;
    let segments: i64 = row.try_get("estimated_segments")?;
    let last_seq: i64 = row.try_get("last_seq")?;
    Ok(CampaignView {
        campaign_id: CampaignId::from_stored(row.try_get("campaign_id")?),
        name: row.try_get("name")?,
        status: CampaignStatus::parse(&status).unwrap_or(CampaignStatus::Paused),
        pause_reason: reason.as_deref().and_then(PauseReason::parse),
        template: row.try_get("template")?,
        channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
        priority: Priority::from_rank(row.try_get("priority")?).unwrap_or(Priority::Normal),
        sender_id: row.try_get("sender_id")?,
        scheduled_at: Timestamp::from_millis(row.try_get("scheduled_at")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        started_at: row
            .try_get::<Option<i64>, _>("started_at")?
            .map(Timestamp::from_millis),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(Timestamp::from_millis),
        totals: CampaignTotals {
            recipients_total: row.try_get("recipients_total")?,
            recipients_accepted: row.try_get("recipients_accepted")?,
            rejected: row.try_get("rejected")?,
            opted_out: row.try_get("opted_out")?,
            estimated_cost: Money::from_units(row.try_get("estimated_cost")?),
            estimated_segments: segments,
            last_seq,
        },
        skipped: row.try_get("skipped")?,
        replies: row.try_get("replies")?,
    })
}

pub(in crate::store) async fn campaign(
    conn: &mut SqliteConnection,
    account_id: &AccountId,
    campaign_id: &CampaignId,
) -> StoreResult<Option<CampaignView>> {
    let row = sqlx::query(include_str!("queries/load_campaign.sql"))
        .bind(campaign_id.as_str())
        .bind(account_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(campaign_view).transpose()?)
}

pub(in crate::store) async fn campaigns(
    conn: &mut SqliteConnection,
    account_id: &AccountId,
    before: Option<&CampaignId>,
    limit: usize,
) -> StoreResult<Vec<CampaignView>> {
    // Ids sort by creation time; "cmp_~" sorts after every real id.
    let rows = sqlx::query(include_str!("queries/list_campaigns.sql"))
        .bind(account_id.as_str())
        .bind(before.map_or("cmp_~", CampaignId::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.iter().map(campaign_view).collect::<Result<_, _>>()?)
}

pub(in crate::store) async fn campaign_counts(
    conn: &mut SqliteConnection,
    campaign_id: &CampaignId,
) -> StoreResult<CampaignCounts> {
    let rows = sqlx::query(include_str!("queries/campaign_counts.sql"))
        .bind(campaign_id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let mut counts = CampaignCounts::default();
    for row in rows {
        let status: String = row.try_get("status")?;
        if let Some(status) = MessageStatus::parse(&status) {
            counts.by_status.push((
                status,
                row.try_get("n")?,
                Money::from_units(row.try_get::<Option<i64>, _>("cost")?.unwrap_or(0)),
            ));
        }
    }
    Ok(counts)
}

pub(in crate::store) async fn rejections(
    pool: &SqlitePool,
    campaign_id: &CampaignId,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<Rejection>> {
    let rows = sqlx::query(include_str!("queries/list_rejections.sql"))
        .bind(campaign_id.as_str())
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(Rejection {
            seq: row.try_get("seq")?,
            phone_number: row.try_get("phone_number")?,
            code: row.try_get("code")?,
            error: row.try_get("error")?,
        });
    }
    Ok(out)
}

pub(in crate::store) async fn active_campaigns(
    pool: &SqlitePool,
) -> StoreResult<Vec<ActiveCampaign>> {
    let rows = sqlx::query(include_str!("queries/active_campaigns.sql"))
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let status: String = row.try_get("status")?;
        let Some(status) = CampaignStatus::parse(&status) else {
            continue;
        };
        out.push(ActiveCampaign {
            campaign_id: CampaignId::from_stored(row.try_get("campaign_id")?),
            status,
            scheduled_at: Timestamp::from_millis(row.try_get("scheduled_at")?),
            fanned_out: row.try_get("fanned_out")?,
            last_seq: row.try_get("last_seq")?,
        });
    }
    Ok(out)
}

pub(in crate::store) async fn campaign_state(
    pool: &SqlitePool,
    campaign_id: &str,
) -> StoreResult<Option<CampaignStatus>> {
    let status: Option<String> = sqlx::query_scalar(include_str!("queries/campaign_state.sql"))
        .bind(campaign_id)
        .fetch_optional(pool)
        .await?;
    Ok(status.as_deref().and_then(CampaignStatus::parse))
}

pub(in crate::store) async fn campaign_waiting(
    pool: &SqlitePool,
    campaign_id: &CampaignId,
) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar(include_str!("queries/campaign_waiting.sql"))
            .bind(campaign_id.as_str())
            .fetch_one(pool)
            .await?,
    )
}

pub(in crate::store) async fn campaign_held(
    pool: &SqlitePool,
    campaign_id: &CampaignId,
) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar(include_str!("queries/campaign_held.sql"))
            .bind(campaign_id.as_str())
            .bind(crate::store::HELD)
            .fetch_one(pool)
            .await?,
    )
}

pub(in crate::store) async fn opt_outs(
    pool: &SqlitePool,
    account_id: &AccountId,
    after: &str,
    limit: usize,
) -> StoreResult<Vec<OptOut>> {
    let rows = sqlx::query(include_str!("queries/list_opt_outs.sql"))
        .bind(account_id.as_str())
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(OptOut {
            phone_number: row.try_get("phone_number")?,
            source: row.try_get("source")?,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
        });
    }
    Ok(out)
}

pub(in crate::store) async fn opt_out_set(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<HashSet<String>> {
    let numbers: Vec<String> = sqlx::query_scalar(include_str!("queries/load_opt_outs.sql"))
        .bind(account_id.as_str())
        .fetch_all(pool)
        .await?;
    Ok(numbers.into_iter().collect())
}

fn stored_template(row: &SqliteRow) -> sqlx::Result<StoredTemplate> {
    Ok(StoredTemplate {
        name: row.try_get("name")?,
        body: row.try_get("body")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

pub(in crate::store) async fn templates(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<Vec<StoredTemplate>> {
    let rows = sqlx::query(include_str!("queries/list_templates.sql"))
        .bind(account_id.as_str())
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(stored_template).collect::<Result<_, _>>()?)
}

pub(in crate::store) async fn template(
    pool: &SqlitePool,
    account_id: &AccountId,
    name: &str,
) -> StoreResult<Option<StoredTemplate>> {
    let row = sqlx::query(include_str!("queries/load_template.sql"))
        .bind(account_id.as_str())
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(stored_template).transpose()?)
}

pub(in crate::store) async fn stats(
    pool: &SqlitePool,
    account_id: &AccountId,
    since: Timestamp,
) -> StoreResult<Vec<StatsRow>> {
    let rows = sqlx::query(include_str!("queries/stats.sql"))
        .bind(account_id.as_str())
        .bind(since.millis())
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let channel: String = row.try_get("channel")?;
        let status: String = row.try_get("status")?;
        let (Some(channel), Some(status)) =
            (Channel::parse(&channel), MessageStatus::parse(&status))
        else {
            continue;
        };
        out.push(StatsRow {
            day: row.try_get("day")?,
            channel,
            status,
            count: row.try_get("n")?,
            cost: Money::from_units(row.try_get::<Option<i64>, _>("cost")?.unwrap_or(0)),
        });
    }
    Ok(out)
}
