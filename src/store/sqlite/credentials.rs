//! Provider credentials: reads on the read pool; writes go through the writer
//! (`campaign::CampaignWrite::SaveCredentials` / `DeleteCredentials`).

use crate::domain::{AccountId, Timestamp};
use crate::store::StoreResult;
use crate::store::credentials::{CredentialRow, StoredCredentials};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

pub(super) async fn save(
    conn: &mut SqliteConnection,
    c: &StoredCredentials,
    now: Timestamp,
) -> StoreResult<u64> {
    Ok(sqlx::query(include_str!("queries/save_credentials.sql"))
        .bind(c.account_id.as_str())
        .bind(&c.provider)
        .bind(&c.webhook_key)
        .bind(&c.public)
        .bind(&c.sealed)
        .bind(&c.key_id)
        .bind(c.verify_token_sha256.as_ref().map(|h| h.as_slice()))
        .bind(now.millis())
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

pub(super) async fn delete(
    conn: &mut SqliteConnection,
    account_id: &AccountId,
    provider: &str,
) -> StoreResult<u64> {
    Ok(sqlx::query(include_str!("queries/delete_credentials.sql"))
        .bind(account_id.as_str())
        .bind(provider)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

pub(in crate::store) async fn for_account(
    pool: &SqlitePool,
    account_id: &AccountId,
    provider: &str,
) -> StoreResult<Option<StoredCredentials>> {
    let row: Option<CredentialRow> = sqlx::query_as(include_str!("queries/load_credentials.sql"))
        .bind(account_id.as_str())
        .bind(provider)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(StoredCredentials::from))
}

pub(in crate::store) async fn all_for_account(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<Vec<StoredCredentials>> {
    let rows: Vec<CredentialRow> = sqlx::query_as(include_str!("queries/load_credentials.sql"))
        .bind(account_id.as_str())
        .bind(None::<&str>)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(StoredCredentials::from).collect())
}

pub(in crate::store) async fn by_webhook_key(
    pool: &SqlitePool,
    provider: &str,
    webhook_key: &str,
) -> StoreResult<Option<StoredCredentials>> {
    let row: Option<CredentialRow> =
        sqlx::query_as(include_str!("queries/credentials_by_webhook_key.sql"))
            .bind(provider)
            .bind(webhook_key)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(StoredCredentials::from))
}

pub(in crate::store) async fn verify_token_known(
    pool: &SqlitePool,
    sha256: &[u8; 32],
) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar(include_str!("queries/verify_token_known.sql"))
            .bind(sha256.as_slice())
            .fetch_one(pool)
            .await?,
    )
}
