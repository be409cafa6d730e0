//! Provider credentials accounts set for themselves, as stored: the public part as JSON, the
//! secrets sealed (`crate::sealing`). Sealing and opening happen above the store; the store
//! never sees a secret in the clear.

use super::sqlite::credentials as sql;
use super::{Backend, Store, StoreResult};
use crate::domain::{AccountId, Timestamp};

/// One account's credentials for one provider, as written.
#[derive(Debug, Clone)]
pub struct StoredCredentials {
    pub account_id: AccountId,
    /// `twilio` or `whatsapp_cloud`.
    pub provider: String,
    /// The provider's own account (Twilio AccountSid) or number (WhatsApp phone number id)
    /// its webhooks name.
    pub webhook_key: String,
    /// The part that may be shown back, as JSON.
    pub public: String,
    pub sealed: Vec<u8>,
    pub key_id: String,
    /// SHA-256 of the WhatsApp webhook verify token, if any.
    pub verify_token_sha256: Option<[u8; 32]>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A stored row as every dialect's credential queries select it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CredentialRow {
    account_id: String,
    provider: String,
    webhook_key: String,
    public: String,
    sealed: Vec<u8>,
    key_id: String,
    verify_token_sha256: Option<Vec<u8>>,
    created_at: i64,
    updated_at: i64,
}

impl From<CredentialRow> for StoredCredentials {
    fn from(row: CredentialRow) -> Self {
        StoredCredentials {
            account_id: AccountId::from_stored(row.account_id),
            provider: row.provider,
            webhook_key: row.webhook_key,
            public: row.public,
            sealed: row.sealed,
            key_id: row.key_id,
            // Herald writes 32 bytes or NULL; anything else matches no token.
            verify_token_sha256: row
                .verify_token_sha256
                .and_then(|v| <[u8; 32]>::try_from(v).ok()),
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        }
    }
}

/// What saving credentials did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Another account already holds credentials for the same provider account or number
    /// (its webhooks could not tell the two apart).
    TakenByOtherAccount,
}

impl Store {
    /// Writes (or replaces) an account's credentials for a provider.
    pub async fn save_credentials(
        &self,
        credentials: StoredCredentials,
    ) -> StoreResult<SaveOutcome> {
        let written = match &self.backend {
            Backend::Sqlite(s) => {
                s.campaign_write(super::sqlite::campaign::CampaignWrite::SaveCredentials(
                    Box::new(credentials),
                ))
                .await?
            }
            Backend::Postgres(p) => p.save_credentials(&credentials).await?,
        };
        Ok(if written > 0 {
            SaveOutcome::Saved
        } else {
            SaveOutcome::TakenByOtherAccount
        })
    }

    /// Removes an account's credentials for a provider; true if there were some.
    pub async fn delete_credentials(
        &self,
        account_id: &AccountId,
        provider: &str,
    ) -> StoreResult<bool> {
        let deleted = match &self.backend {
            Backend::Sqlite(s) => {
                s.campaign_write(super::sqlite::campaign::CampaignWrite::DeleteCredentials {
                    account_id: account_id.clone(),
                    provider: provider.to_owned(),
                })
                .await?
            }
            Backend::Postgres(p) => p.delete_credentials(account_id, provider).await?,
        };
        Ok(deleted > 0)
    }

    /// The account's credentials for `provider`, if it set any.
    pub async fn credentials(
        &self,
        account_id: &AccountId,
        provider: &str,
    ) -> StoreResult<Option<StoredCredentials>> {
        match &self.backend {
            Backend::Sqlite(s) => sql::for_account(s.reads(), account_id, provider).await,
            Backend::Postgres(p) => p.credentials(account_id, provider).await,
        }
    }

    /// Every provider's credentials of the account, by provider name.
    pub async fn all_credentials(
        &self,
        account_id: &AccountId,
    ) -> StoreResult<Vec<StoredCredentials>> {
        match &self.backend {
            Backend::Sqlite(s) => sql::all_for_account(s.reads(), account_id).await,
            Backend::Postgres(p) => p.all_credentials(account_id).await,
        }
    }

    /// The credentials whose webhooks name `webhook_key` (a Twilio AccountSid, a WhatsApp
    /// phone number id).
    pub async fn credentials_by_webhook_key(
        &self,
        provider: &str,
        webhook_key: &str,
    ) -> StoreResult<Option<StoredCredentials>> {
        match &self.backend {
            Backend::Sqlite(s) => sql::by_webhook_key(s.reads(), provider, webhook_key).await,
            Backend::Postgres(p) => p.credentials_by_webhook_key(provider, webhook_key).await,
        }
    }

    /// Whether some account's WhatsApp credentials have this verify token (by its hash).
    pub async fn verify_token_known(&self, sha256: &[u8; 32]) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite(s) => sql::verify_token_known(s.reads(), sha256).await,
            Backend::Postgres(p) => p.verify_token_known(sha256).await,
        }
    }
}
