//! Reads, served by the pool of read connections while the writer commits.

use crate::domain::{AccountId, ApiKeyId, MessageId, Priority, Timestamp};
use crate::store::rows::{AwaitingRow, BalanceRow, HistoryRow, MessageRow};
use crate::store::{
    AuthenticatedKey, AwaitingReceipt, Balance, MessageView, ReceiptCursor, StoreError, StoreResult,
};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use subtle::ConstantTimeEq;

pub(super) async fn authenticate(
    pool: &SqlitePool,
    key_hash: [u8; 32],
) -> StoreResult<Option<AuthenticatedKey>> {
    let row = sqlx::query(include_str!("queries/authenticate.sql"))
        .bind(&key_hash[..])
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let stored: Vec<u8> = row.try_get("key_hash")?;
    // The index lookup already matched; comparing again in constant time keeps the final
    // decision free of early-exit timing, whatever the index does.
    if !bool::from(stored.as_slice().ct_eq(&key_hash[..])) {
        return Ok(None);
    }
    Ok(Some(AuthenticatedKey {
        api_key_id: ApiKeyId::from_stored(row.try_get("api_key_id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
    }))
}

pub(super) async fn balance<'c>(
    db: impl sqlx::SqliteExecutor<'c>,
    account_id: &AccountId,
) -> StoreResult<Balance> {
    let row: BalanceRow = sqlx::query_as(include_str!("queries/load_balance.sql"))
        .bind(account_id.as_str())
        .bind(Timestamp::now().day())
        .fetch_optional(db)
        .await?
        .ok_or_else(|| StoreError::NoSuchAccount(account_id.to_string()))?;
    Ok(row.into())
}

pub(super) async fn message(
    pool: &SqlitePool,
    account_id: &AccountId,
    message_id: &MessageId,
) -> StoreResult<Option<MessageView>> {
    // One read transaction, so status and history come from the same snapshot (WAL): two
    // separate reads can see `delivered` beside a history that already ends in `read`.
    let mut tx = pool.begin().await?;
    let row: Option<MessageRow> = sqlx::query_as(include_str!("queries/load_message.sql"))
        .bind(message_id.as_str())
        .bind(account_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let events: Vec<HistoryRow> = sqlx::query_as(include_str!("queries/load_history.sql"))
        .bind(message_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(row.into_view(events)))
}

pub(super) async fn queue_depth(pool: &SqlitePool) -> StoreResult<Vec<(Priority, i64)>> {
    let rows = sqlx::query(include_str!("queries/queue_depth.sql"))
        .fetch_all(pool)
        .await?;
    let mut depth: Vec<(Priority, i64)> = Priority::DESCENDING.iter().map(|p| (*p, 0)).collect();
    for row in rows {
        let rank: i64 = row.try_get("priority")?;
        let waiting: i64 = row.try_get("waiting")?;
        if let Some(slot) = depth.iter_mut().find(|(p, _)| p.rank() == rank) {
            slot.1 = waiting;
        }
    }
    Ok(depth)
}

pub(super) async fn find_account(pool: &SqlitePool, name_or_id: &str) -> StoreResult<AccountId> {
    let row = sqlx::query(include_str!("queries/find_account_by_name.sql"))
        .bind(name_or_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NoSuchAccount(name_or_id.to_owned()))?;
    Ok(AccountId::from_stored(row.try_get("account_id")?))
}

pub(super) async fn account_count(pool: &SqlitePool) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar(include_str!("queries/count_accounts.sql"))
            .fetch_one(pool)
            .await?,
    )
}

/// One page of `sent` messages past their receipt time (see `awaiting_receipt.sql`).
pub(super) async fn awaiting_receipt(
    pool: &SqlitePool,
    provider: &str,
    after: &ReceiptCursor,
    sent_before: Timestamp,
    limit: usize,
) -> StoreResult<Vec<AwaitingReceipt>> {
    let rows: Vec<AwaitingRow> = sqlx::query_as(include_str!("queries/awaiting_receipt.sql"))
        .bind(provider)
        .bind(after.updated_at.millis())
        .bind(after.message_id.as_str())
        .bind(sent_before.millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(AwaitingReceipt::from).collect())
}
