//! SQLite's statements for events and webhook deliveries (the rules are `store::outbox`,
//! what is stored `store::events`).

use crate::domain::{AccountId, Timestamp};
use crate::store::StoreResult;
use crate::store::delivery::json_array;
use crate::store::events::{AttemptView, DeliveryJob, DeliveryView, EventRecord, WebhookEndpoint};
use crate::store::outbox::{AttemptRow, ClaimedRow, DeliveryRow, EventRow, OutboxSql, WebhookRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

impl OutboxSql for SqliteConnection {
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

    async fn insert_fresh_deliveries(&mut self, rows: String) -> sqlx::Result<Vec<(i64, i64)>> {
        sqlx::query_as(include_str!("queries/insert_fresh_deliveries.sql"))
            .bind(rows)
            .fetch_all(self)
            .await
    }

    async fn move_webhook_cursor(&mut self, to: i64) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/move_webhook_cursor.sql"))
            .bind(to)
            .execute(self)
            .await?;
        Ok(())
    }
}

pub(in crate::store) async fn webhook_cursor(pool: &SqlitePool) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar(include_str!("queries/webhook_cursor.sql"))
            .fetch_one(pool)
            .await?,
    )
}

/// Events after `after` that go to a webhook, read up to the log's end as it was when the
/// read began (SQLite numbers events in commit order), and that end, or the last event given
/// when there were more than `limit`.
pub(in crate::store) async fn fresh_webhook_events(
    pool: &SqlitePool,
    after: i64,
    limit: usize,
) -> StoreResult<(Vec<DeliveryJob>, i64)> {
    let end = last_event_seq(pool).await?;
    if end <= after {
        return Ok((Vec::new(), after));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<ClaimedRow> = sqlx::query_as(include_str!("queries/fresh_webhook_events.sql"))
        .bind(after)
        .bind(end)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit;
    let jobs: Vec<DeliveryJob> = rows.into_iter().map(ClaimedRow::into_job).collect();
    let read_to = match jobs.last() {
        Some(last) if full => last.event.seq,
        _ => end,
    };
    Ok((jobs, read_to))
}

pub(in crate::store) async fn events_after(
    pool: &SqlitePool,
    after: i64,
    account_id: Option<&AccountId>,
    limit: usize,
) -> StoreResult<Vec<EventRecord>> {
    let rows: Vec<EventRow> = sqlx::query_as(concat!(
        include_str!("queries/event_select.sql"),
        "WHERE e.event_seq > ?1 AND (?2 IS NULL OR e.account_id = ?2)\n",
        "ORDER BY e.event_seq LIMIT +?3"
    ))
    .bind(after)
    .bind(account_id.map(AccountId::as_str))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(EventRow::into_record).collect())
}

pub(in crate::store) async fn last_event_seq(pool: &SqlitePool) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar(include_str!("queries/last_event_seq.sql"))
            .fetch_one(pool)
            .await?,
    )
}

pub(in crate::store) async fn webhook(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<WebhookEndpoint> {
    let row: WebhookRow = sqlx::query_as(include_str!("queries/load_webhook.sql"))
        .bind(account_id.as_str())
        .fetch_one(pool)
        .await?;
    Ok(row.into_endpoint())
}

pub(in crate::store) async fn work_due(pool: &SqlitePool, now: Timestamp) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar(include_str!("queries/webhook_work_due.sql"))
            .bind(now.millis())
            .fetch_one(pool)
            .await?,
    )
}

pub(in crate::store) async fn delivery_jobs(
    pool: &SqlitePool,
    claimed: &[(i64, i64)],
) -> StoreResult<Vec<DeliveryJob>> {
    let rows: Vec<ClaimedRow> = sqlx::query_as(include_str!("queries/claimed_deliveries.sql"))
        .bind(json_array(claimed))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(ClaimedRow::into_job).collect())
}

pub(in crate::store) async fn deliveries(
    pool: &SqlitePool,
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
            .fetch_all(pool)
            .await?;
    Ok(rows.iter().map(DeliveryRow::view).collect())
}

/// One delivery and its attempts, in one read transaction (one snapshot).
pub(in crate::store) async fn delivery(
    pool: &SqlitePool,
    account_id: &AccountId,
    delivery_id: i64,
) -> StoreResult<Option<(DeliveryView, Vec<AttemptView>)>> {
    let mut tx = pool.begin().await?;
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
