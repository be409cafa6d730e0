//! Reads for campaigns, templates and statistics on PostgreSQL. A campaign with its
//! counters comes from one snapshot (REPEATABLE READ), so the counters add up to what the
//! campaign says it has.

use super::PgStore;
use crate::domain::{AccountId, CampaignId, CampaignStatus, Timestamp};
use crate::store::rows::{
    ActiveCampaignRow, CampaignRow, StatsSqlRow, StatusCountRow, TemplateRow,
};
use crate::store::{
    ActiveCampaign, CampaignCounts, CampaignView, HELD, Rejection, StatsRow, StoreResult,
    StoredTemplate,
};
use sqlx::postgres::PgConnection;

async fn campaign(
    conn: &mut PgConnection,
    account_id: &AccountId,
    campaign_id: &CampaignId,
) -> sqlx::Result<Option<CampaignView>> {
    let row: Option<CampaignRow> = sqlx::query_as(include_str!("queries/load_campaign.sql"))
        .bind(campaign_id.as_str())
        .bind(account_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(CampaignView::from))
}

async fn counts(conn: &mut PgConnection, campaign_id: &CampaignId) -> sqlx::Result<CampaignCounts> {
    let rows: Vec<StatusCountRow> = sqlx::query_as(include_str!("queries/campaign_counts.sql"))
        .bind(campaign_id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

impl PgStore {
    pub(in crate::store) async fn campaign(
        &self,
        account_id: &AccountId,
        campaign_id: &CampaignId,
    ) -> StoreResult<Option<CampaignView>> {
        let mut conn = self.pool.acquire().await?;
        Ok(campaign(&mut conn, account_id, campaign_id).await?)
    }

    pub(in crate::store) async fn campaign_with_counts(
        &self,
        account_id: &AccountId,
        campaign_id: &CampaignId,
    ) -> StoreResult<Option<(CampaignView, CampaignCounts)>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let Some(view) = campaign(&mut tx, account_id, campaign_id).await? else {
            return Ok(None);
        };
        let counts = counts(&mut tx, campaign_id).await?;
        tx.commit().await?;
        Ok(Some((view, counts)))
    }

    pub(in crate::store) async fn campaigns_with_counts(
        &self,
        account_id: &AccountId,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> StoreResult<Vec<(CampaignView, CampaignCounts)>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        // Ids sort by creation time; "cmp_~" sorts after every real id.
        let rows: Vec<CampaignRow> = sqlx::query_as(include_str!("queries/list_campaigns.sql"))
            .bind(account_id.as_str())
            .bind(before.map_or("cmp_~", CampaignId::as_str))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        let mut listed = Vec::with_capacity(rows.len());
        for view in rows.into_iter().map(CampaignView::from) {
            let counts = counts(&mut tx, &view.campaign_id).await?;
            listed.push((view, counts));
        }
        tx.commit().await?;
        Ok(listed)
    }

    pub(in crate::store) async fn campaign_rejections(
        &self,
        campaign_id: &CampaignId,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<Rejection>> {
        Ok(sqlx::query_as(include_str!("queries/list_rejections.sql"))
            .bind(campaign_id.as_str())
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?)
    }

    pub(in crate::store) async fn active_campaigns(&self) -> StoreResult<Vec<ActiveCampaign>> {
        let rows: Vec<ActiveCampaignRow> =
            sqlx::query_as(include_str!("queries/active_campaigns.sql"))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(ActiveCampaignRow::into_active)
            .collect())
    }

    pub(in crate::store) async fn campaign_state(
        &self,
        campaign_id: &str,
    ) -> StoreResult<Option<CampaignStatus>> {
        let status: Option<String> = sqlx::query_scalar(include_str!("queries/campaign_state.sql"))
            .bind(campaign_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(status.as_deref().and_then(CampaignStatus::parse))
    }

    pub(in crate::store) async fn campaign_waiting(
        &self,
        campaign_id: &CampaignId,
    ) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar(include_str!("queries/campaign_waiting.sql"))
                .bind(campaign_id.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(in crate::store) async fn campaign_held(
        &self,
        campaign_id: &CampaignId,
    ) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar(include_str!("queries/campaign_held.sql"))
                .bind(campaign_id.as_str())
                .bind(HELD)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(in crate::store) async fn templates(
        &self,
        account_id: &AccountId,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let rows: Vec<TemplateRow> = sqlx::query_as(include_str!("queries/list_templates.sql"))
            .bind(account_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(StoredTemplate::from).collect())
    }

    pub(in crate::store) async fn template(
        &self,
        account_id: &AccountId,
        name: &str,
    ) -> StoreResult<Option<StoredTemplate>> {
        let row: Option<TemplateRow> = sqlx::query_as(include_str!("queries/load_template.sql"))
            .bind(account_id.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(StoredTemplate::from))
    }

    pub(in crate::store) async fn stats(
        &self,
        account_id: &AccountId,
        since: Timestamp,
    ) -> StoreResult<Vec<StatsRow>> {
        let rows: Vec<StatsSqlRow> = sqlx::query_as(include_str!("queries/stats.sql"))
            .bind(account_id.as_str())
            .bind(since.millis())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(StatsSqlRow::into_stats)
            .collect())
    }
}
