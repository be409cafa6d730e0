//! The overview's reads, in one read transaction so its parts agree.

use super::reads;
use crate::domain::{AccountId, MessageStatus, Priority};
use crate::store::overview::{Overview, Reached, Windows};
use crate::store::{StoreError, StoreResult};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use std::collections::BTreeMap;

fn status(raw: &str) -> StoreResult<MessageStatus> {
    MessageStatus::parse(raw).ok_or_else(|| {
        StoreError::Invalid(format!("a tallied status Herald never writes: {raw:?}"))
    })
}

pub(in crate::store) async fn overview(
    pool: &SqlitePool,
    account_id: &AccountId,
    windows: Windows,
) -> StoreResult<Overview> {
    let mut tx = pool.begin().await?;
    let balance = reads::balance(&mut *tx, account_id).await?;

    let mut minutes: BTreeMap<i64, Reached> = BTreeMap::new();
    let rows = sqlx::query(include_str!("queries/overview_minutes.sql"))
        .bind(account_id.as_str())
        .bind(windows.minutes_from)
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        let reached = status(row.try_get("status")?)?;
        *minutes
            .entry(row.try_get("bucket")?)
            .or_default()
            .entry(reached)
            .or_default() += row.try_get::<i64, _>("n")?;
    }

    let (mut last_day, mut last_month) = (Reached::new(), Reached::new());
    let rows = sqlx::query(include_str!("queries/overview_windows.sql"))
        .bind(account_id.as_str())
        .bind(windows.month_from)
        .bind(windows.day_from)
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        let reached = status(row.try_get("status")?)?;
        last_day.insert(reached, row.try_get("last_day")?);
        last_month.insert(reached, row.try_get("last_month")?);
    }

    let rows = sqlx::query(include_str!("queries/overview_queue.sql"))
        .bind(account_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
    let mut queue = Vec::with_capacity(rows.len());
    for row in rows {
        let rank: i64 = row.try_get("priority")?;
        let priority = Priority::from_rank(rank).ok_or_else(|| {
            StoreError::Invalid(format!("a stored priority Herald never writes: {rank}"))
        })?;
        queue.push((priority, row.try_get("waiting")?));
    }
    tx.commit().await?;
    Ok(Overview {
        balance,
        minutes,
        queue,
        last_day,
        last_month,
    })
}
