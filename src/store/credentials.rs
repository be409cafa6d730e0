//! Provider credentials accounts set for themselves, as stored: the public part as JSON, the
//! secrets sealed (`crate::sealing`). Sealing and opening happen above the store; the store
//! never sees a secret in the clear.

use super::Store;
use super::StoreResult;
use super::sqlite::credentials as sql;
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
        let written = self
            .sqlite()?
            .campaign_write(super::sqlite::campaign::CampaignWrite::SaveCredentials(
                Box::new(credentials),
            ))
            .await?;
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
        let deleted = self
            .sqlite()?
            .campaign_write(super::sqlite::campaign::CampaignWrite::DeleteCredentials {
                account_id: account_id.clone(),
                provider: provider.to_owned(),
            })
            .await?;
        Ok(deleted > 0)
    }

    /// The account's credentials for `provider`, if it set any.
    pub async fn credentials(
        &self,
        account_id: &AccountId,
        provider: &str,
    ) -> StoreResult<Option<StoredCredentials>> {
        match &self.backend {
            super::Backend::Sqlite(s) => sql::for_account(s.reads(), account_id, provider).await,
            // Delivery asks on every message's route; saving credentials is SQLite-only so
            // far, so on PostgreSQL the answer comes from an empty table, but it is read.
            super::Backend::Postgres(p) => p.credentials(account_id, provider).await,
        }
    }

    /// Every provider's credentials of the account, by provider name.
    pub async fn all_credentials(
        &self,
        account_id: &AccountId,
    ) -> StoreResult<Vec<StoredCredentials>> {
        sql::all_for_account(self.sqlite()?.reads(), account_id).await
    }

    /// The credentials whose webhooks name `webhook_key` (a Twilio AccountSid, a WhatsApp
    /// phone number id).
    pub async fn credentials_by_webhook_key(
        &self,
        provider: &str,
        webhook_key: &str,
    ) -> StoreResult<Option<StoredCredentials>> {
        sql::by_webhook_key(self.sqlite()?.reads(), provider, webhook_key).await
    }

    /// Whether some account's WhatsApp credentials have this verify token (by its hash).
    pub async fn verify_token_known(&self, sha256: &[u8; 32]) -> StoreResult<bool> {
        sql::verify_token_known(self.sqlite()?.reads(), sha256).await
    }
}
