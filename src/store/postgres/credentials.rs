//! Provider credentials on PostgreSQL: the statements of `sqlite::credentials`, each its own
//! transaction.

use super::PgStore;
use crate::domain::{AccountId, Timestamp};
use crate::store::credentials::{CredentialRow, StoredCredentials};
use crate::store::{StoreError, StoreResult};

impl PgStore {
    /// Rows written: 1, or 0 when another account holds the provider account or number.
    pub(in crate::store) async fn save_credentials(
        &self,
        c: &StoredCredentials,
    ) -> StoreResult<u64> {
        let now = Timestamp::now();
        let written = self
            .write(|conn| {
                let c = c.clone();
                Box::pin(async move {
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
                })
            })
            .await;
        match written {
            // The only unique index the upsert does not resolve is (provider, webhook_key):
            // another account saved the same provider account or number meanwhile.
            Err(StoreError::Database(sqlx::Error::Database(db))) if db.is_unique_violation() => {
                Ok(0)
            }
            other => other,
        }
    }

    /// Rows removed: 1, or 0 when the account had none for the provider.
    pub(in crate::store) async fn delete_credentials(
        &self,
        account_id: &AccountId,
        provider: &str,
    ) -> StoreResult<u64> {
        self.write(|conn| {
            let (account_id, provider) = (account_id.clone(), provider.to_owned());
            Box::pin(async move {
                Ok(sqlx::query(include_str!("queries/delete_credentials.sql"))
                    .bind(account_id.as_str())
                    .bind(&provider)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())
            })
        })
        .await
    }

    pub(in crate::store) async fn credentials(
        &self,
        account_id: &AccountId,
        provider: &str,
    ) -> StoreResult<Option<StoredCredentials>> {
        let row: Option<CredentialRow> =
            sqlx::query_as(include_str!("queries/load_credentials.sql"))
                .bind(account_id.as_str())
                .bind(provider)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(StoredCredentials::from))
    }

    pub(in crate::store) async fn all_credentials(
        &self,
        account_id: &AccountId,
    ) -> StoreResult<Vec<StoredCredentials>> {
        let rows: Vec<CredentialRow> = sqlx::query_as(include_str!("queries/load_credentials.sql"))
            .bind(account_id.as_str())
            .bind(None::<&str>)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(StoredCredentials::from).collect())
    }

    pub(in crate::store) async fn credentials_by_webhook_key(
        &self,
        provider: &str,
        webhook_key: &str,
    ) -> StoreResult<Option<StoredCredentials>> {
        let row: Option<CredentialRow> =
            sqlx::query_as(include_str!("queries/credentials_by_webhook_key.sql"))
                .bind(provider)
                .bind(webhook_key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(StoredCredentials::from))
    }

    pub(in crate::store) async fn verify_token_known(
        &self,
        sha256: &[u8; 32],
    ) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar(include_str!("queries/verify_token_known.sql"))
                .bind(sha256.as_slice())
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
