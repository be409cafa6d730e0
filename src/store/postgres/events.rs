//! PostgreSQL's statements for webhook deliveries (the rules are `store::outbox`, what is
//! stored `store::events`). The event stream reads the log in `stream.rs`.

use super::PgStore;
use crate::domain::{AccountId, Timestamp};
use crate::store::StoreResult;
use crate::store::delivery::json_array;
use crate::store::events::{AttemptView, DeliveryJob, DeliveryView, WebhookEndpoint};
use crate::store::outbox::{
    self, AttemptRow, ClaimedRow, DeliveryRow, EventWrite, EventWritten, OutboxSql, WebhookRow,
};
use sqlx::postgres::PgConnection;

impl OutboxSql for PgConnection {
    async fn set_webhook(&mut self, account_id: &str, url: String, now: i64) -> sqlx::Result<u64> {
        Ok(sqlx::query(include_str!("queries/set_webhook.sql"))
            .bind(account_id)
            .bind(url)
            .bind(now)
            .execute(self)
            .await?
            .rows_affected())
    }

    async fn delete_webhook(&mut self, account_id: &str, now: i64) -> sqlx::Result<u64> {
        Ok(sqlx::query(include_str!("queries/delete_webhook.sql"))
            .bind(account_id)
            .bind(now)
            .execute(self)
            .await?
            .rows_affected())
    }

    async fn give_up_webhook_deliveries(&mut self, account_id: &str, now: i64) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/give_up_webhook_deliveries.sql"))
            .bind(account_id)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn set_webhook_secret(
        &mut self,
        account_id: &str,
        secret: String,
        now: i64,
    ) -> sqlx::Result<u64> {
        Ok(sqlx::query(include_str!("queries/set_webhook_secret.sql"))
            .bind(account_id)
            .bind(secret)
            .bind(now)
            .execute(self)
            .await?
            .rows_affected())
    }

    async fn claim_webhook_deliveries(
        &mut self,
        lease_until: i64,
        now: i64,
        busy: String,
        limit: i64,
    ) -> sqlx::Result<Vec<(i64, i64)>> {
        sqlx::query_as(include_str!("queries/claim_webhook_deliveries.sql"))
            .bind(lease_until)
            .bind(now)
            .bind(busy)
            .bind(limit)
            .fetch_all(self)
            .await
    }

    async fn redeliver_webhook(
        &mut self,
        account_id: &str,
        delivery_id: i64,
        now: i64,
    ) -> sqlx::Result<u64> {
        Ok(sqlx::query(include_str!("queries/redeliver_webhook.sql"))
            .bind(account_id)
            .bind(delivery_id)
            .bind(now)
            .execute(self)
            .await?
            .rows_affected())
    }

    async fn purge_events(&mut self, before: i64) -> sqlx::Result<u64> {
        Ok(sqlx::query(include_str!("queries/purge_events.sql"))
            .bind(before)
            .execute(self)
            .await?
            .rows_affected())
    }

    async fn insert_webhook_attempts(&mut self, attempts: String) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/insert_webhook_attempts.sql"))
            .bind(attempts)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn mark_webhooks_delivered(&mut self, delivered: String) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/mark_webhooks_delivered.sql"))
            .bind(delivered)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn finish_webhook_deliveries(&mut self, moves: String) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/finish_webhook_deliveries.sql"))
            .bind(moves)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn webhook_endpoint_health(
        &mut self,
        ok: String,
        failing: String,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/webhook_endpoint_health.sql"))
            .bind(ok)
            .bind(failing)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn disable_failing_webhooks(
        &mut self,
        failing: String,
        failing_before: i64,
        now: i64,
    ) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(include_str!("queries/disable_failing_webhooks.sql"))
            .bind(failing)
            .bind(failing_before)
            .bind(now)
            .fetch_all(self)
            .await
    }

    // Deliveries to accounts' webhooks are rows the event's trigger writes here: the log is
    // not read by cursor (`Store::webhook_cursor` is None), so nothing asks for these.
    async fn insert_fresh_deliveries(&mut self, _rows: String) -> sqlx::Result<Vec<(i64, i64)>> {
        Err(not_by_cursor())
    }

    async fn move_webhook_cursor(&mut self, _to: i64) -> sqlx::Result<()> {
        Err(not_by_cursor())
    }
}

impl PgStore {
    pub(in crate::store) async fn events_write(
        &self,
        write: EventWrite,
    ) -> StoreResult<EventWritten> {
        self.write(|conn| {
            let write = write.clone();
            Box::pin(async move { outbox::run(conn, write).await })
        })
        .await
    }

    pub(in crate::store) async fn webhook(
        &self,
        account_id: &AccountId,
    ) -> StoreResult<WebhookEndpoint> {
        let row: WebhookRow = sqlx::query_as(include_str!("queries/load_webhook.sql"))
            .bind(account_id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.into_endpoint())
    }

    pub(in crate::store) async fn webhook_work_due(&self, now: Timestamp) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar(include_str!("queries/webhook_work_due.sql"))
                .bind(now.millis())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(in crate::store) async fn delivery_jobs(
        &self,
        claimed: &[(i64, i64)],
    ) -> StoreResult<Vec<DeliveryJob>> {
        let rows: Vec<ClaimedRow> = sqlx::query_as(include_str!("queries/claimed_deliveries.sql"))
            .bind(json_array(claimed))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(ClaimedRow::into_job).collect())
    }

    pub(in crate::store) async fn deliveries(
        &self,
        account_id: &AccountId,
        state: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryView>> {
        let rows: Vec<DeliveryRow> =
            sqlx::query_as(include_str!("queries/list_webhook_deliveries.sql"))
                .bind(account_id.as_str())
                .bind(state)
                .bind(before)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(DeliveryRow::view).collect())
    }

    /// One delivery and its attempts from one snapshot.
    pub(in crate::store) async fn delivery(
        &self,
        account_id: &AccountId,
        delivery_id: i64,
    ) -> StoreResult<Option<(DeliveryView, Vec<AttemptView>)>> {
        use sqlx::Connection as _;
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let Some(row): Option<DeliveryRow> =
            sqlx::query_as(include_str!("queries/load_webhook_delivery.sql"))
                .bind(account_id.as_str())
                .bind(delivery_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let attempts: Vec<AttemptRow> =
            sqlx::query_as(include_str!("queries/load_webhook_attempts.sql"))
                .bind(delivery_id)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(row.with_attempts(attempts)))
    }
}

fn not_by_cursor() -> sqlx::Error {
    sqlx::Error::Protocol(
        "PostgreSQL's webhook deliveries are not read from the log by cursor".into(),
    )
}
