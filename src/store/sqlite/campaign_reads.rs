//! Reads for campaigns, opt-outs, templates and statistics, served by the read pool.

use crate::domain::{AccountId, CampaignId, CampaignStatus, Timestamp};
use crate::store::rows::{
    ActiveCampaignRow, CampaignRow, StatsSqlRow, StatusCountRow, TemplateRow,
};
use crate::store::{
    ActiveCampaign, CampaignCounts, CampaignView, OptOut, Rejection, StatsRow, StoreResult,
    StoredTemplate,
};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use std::collections::HashSet;

pub(in crate::store) async fn campaign(
    conn: &mut SqliteConnection,
    account_id: &AccountId,
    campaign_id: &CampaignId,
) -> StoreResult<Option<CampaignView>> {
    let row: Option<CampaignRow> = sqlx::query_as(include_str!("queries/load_campaign.sql"))
        .bind(campaign_id.as_str())
        .bind(account_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(CampaignView::from))
}

pub(in crate::store) async fn campaigns(
    conn: &mut SqliteConnection,
    account_id: &AccountId,
    before: Option<&CampaignId>,
    limit: usize,
) -> StoreResult<Vec<CampaignView>> {
    // Ids sort by creation time; "cmp_~" sorts after every real id.
    let rows: Vec<CampaignRow> = sqlx::query_as(include_str!("queries/list_campaigns.sql"))
        .bind(account_id.as_str())
        .bind(before.map_or("cmp_~", CampaignId::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(CampaignView::from).collect())
}

pub(in crate::store) async fn campaign_counts(
    conn: &mut SqliteConnection,
    campaign_id: &CampaignId,
) -> StoreResult<CampaignCounts> {
    let rows: Vec<StatusCountRow> = sqlx::query_as(include_str!("queries/campaign_counts.sql"))
        .bind(campaign_id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

pub(in crate::store) async fn rejections(
    pool: &SqlitePool,
    campaign_id: &CampaignId,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<Rejection>> {
    Ok(sqlx::query_as(include_str!("queries/list_rejections.sql"))
        .bind(campaign_id.as_str())
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?)
}

pub(in crate::store) async fn active_campaigns(
    pool: &SqlitePool,
) -> StoreResult<Vec<ActiveCampaign>> {
    let rows: Vec<ActiveCampaignRow> = sqlx::query_as(include_str!("queries/active_campaigns.sql"))
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(ActiveCampaignRow::into_active)
        .collect())
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

pub(in crate::store) async fn templates(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<Vec<StoredTemplate>> {
    let rows: Vec<TemplateRow> = sqlx::query_as(include_str!("queries/list_templates.sql"))
        .bind(account_id.as_str())
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(StoredTemplate::from).collect())
}

pub(in crate::store) async fn template(
    pool: &SqlitePool,
    account_id: &AccountId,
    name: &str,
) -> StoreResult<Option<StoredTemplate>> {
    let row: Option<TemplateRow> = sqlx::query_as(include_str!("queries/load_template.sql"))
        .bind(account_id.as_str())
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(StoredTemplate::from))
}

pub(in crate::store) async fn stats(
    pool: &SqlitePool,
    account_id: &AccountId,
    since: Timestamp,
) -> StoreResult<Vec<StatsRow>> {
    let rows: Vec<StatsSqlRow> = sqlx::query_as(include_str!("queries/stats.sql"))
        .bind(account_id.as_str())
        .bind(since.millis())
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(StatsSqlRow::into_stats)
        .collect())
}
