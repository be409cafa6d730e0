//! The overview's reads, in one read transaction so its parts agree.

use super::reads;
use crate::domain::AccountId;
use crate::store::StoreResult;
use crate::store::overview::{OverviewRows, Windows};
use sqlx::sqlite::SqlitePool;

pub(in crate::store) async fn overview(
    pool: &SqlitePool,
    account_id: &AccountId,
    windows: Windows,
) -> StoreResult<OverviewRows> {
    let mut tx = pool.begin().await?;
    let balance = reads::balance(&mut *tx, account_id).await?;
    let minutes = sqlx::query_as(include_str!("queries/overview_minutes.sql"))
        .bind(account_id.as_str())
        .bind(windows.minutes_from)
        .fetch_all(&mut *tx)
        .await?;
    let window_rows = sqlx::query_as(include_str!("queries/overview_windows.sql"))
        .bind(account_id.as_str())
        .bind(windows.month_from)
        .bind(windows.day_from)
        .fetch_all(&mut *tx)
        .await?;
    let queue = sqlx::query_as(include_str!("queries/overview_queue.sql"))
        .bind(account_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(OverviewRows {
        balance,
        minutes,
        windows: window_rows,
        queue,
    })
}
