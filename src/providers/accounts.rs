//! Providers an account brings itself: its own Twilio account or WhatsApp number, set through
//! the API (`PUT /api/messaging/providers/{provider}`). Its messages on that provider's
//! channel then go out with its credentials, from its senders, at their rates, and the
//! provider's webhooks for it are checked with its secrets.
//!
//! Secrets are sealed before they reach the store (`crate::sealing`) and opened only here,
//! to build the adapter; nothing answers them back. Adapters are built once per set of
//! credentials and shared by the API (webhooks) and the workers (sends, lookups); a process
//! that did not make a change itself notices it within [`RECHECK_AFTER`].
//!
//! An account's own provider replaces the deployment's for its channel and has no fallback:
//! a fallback through the deployment's provider would send from another sender and bill
//! another provider account, which is not what an account that brought its own asked for.

use super::Provider;
use super::twilio::TwilioProvider;
use super::whatsapp::WhatsappProvider;
use crate::config::{Settings, TWILIO, WHATSAPP_CLOUD};
use crate::domain::{AccountId, Channel, Timestamp};
use crate::sealing::{SealError, SealingKey};
use crate::store::credentials::{SaveOutcome, StoredCredentials};
use crate::store::{Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a process trusts what it loaded before reading the account's row again (a
/// change made through another process's API shows within this long).
pub const RECHECK_AFTER: Duration = Duration::from_secs(15);

/// The provider that carries a channel's messages when an account brings its own.
pub fn provider_of(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => TWILIO,
        Channel::Whatsapp => WHATSAPP_CLOUD,
    }
}

/// One sender of an account's Twilio account and the rate Twilio allows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderRate {
    /// A number in E.164, an alphanumeric sender id, or a Messaging Service SID (`MG…`).
    pub from: String,
    /// Messages per second (a long code 1, toll-free 3, a short code 100, …).
    pub per_second: u32,
}

/// Credentials as an account gives them (already validated by the API).
pub enum Credentials {
    Twilio {
        account_sid: String,
        auth_token: SecretString,
        /// The first is the default sender (a message's `sender_id` may name another).
        senders: Vec<SenderRate>,
    },
    WhatsappCloud {
        phone_number_id: String,
        access_token: SecretString,
        app_secret: SecretString,
        /// For Meta's verification GET of the account's own app's webhook.
        verify_token: Option<SecretString>,
        per_second: u32,
    },
}

/// What may be shown of stored credentials.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PublicPart {
    Twilio {
        account_sid: String,
        senders: Vec<SenderRate>,
    },
    WhatsappCloud {
        phone_number_id: String,
        per_second: u32,
    },
}

/// Stored credentials as the API shows them: everything but the secrets, which are named.
#[derive(Debug, Clone)]
pub struct CredentialsView {
    pub provider: &'static str,
    pub public: PublicPart,
    /// Which secrets are stored (never their values).
    pub secrets: Vec<&'static str>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct TwilioSecrets {
    auth_token: String,
}

#[derive(Serialize, Deserialize)]
struct WhatsappSecrets {
    access_token: String,
    app_secret: String,
    #[serde(default)]
    verify_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "this Herald has no credentials.key, so accounts cannot keep provider credentials; the operator sets HERALD__CREDENTIALS__KEY"
    )]
    NoKey,
    #[error(transparent)]
    Sealed(#[from] SealError),
    #[error("the stored credentials cannot be read: {0}")]
    Unreadable(String),
    #[error("the provider adapter could not be built: {0}")]
    Build(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a process knows of one account's credentials for one provider.
#[derive(Clone)]
struct Known {
    /// None: the account has none (its messages use the deployment's provider).
    provider: Option<Arc<dyn Provider>>,
    updated_at: Option<Timestamp>,
    checked: Instant,
}

/// The accounts' own providers, shared by the API and the workers of a process.
#[derive(Clone)]
pub struct AccountProviders {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    key: Option<SealingKey>,
    settings: Settings,
    /// Per account, what is known for each channel's provider (by [`slot`]). Looked up on
    /// every delivery, so by reference: no key is built per message.
    known: Mutex<HashMap<AccountId, [Option<Known>; 2]>>,
    /// One load at a time per stripe of accounts: the deliveries that find an account's
    /// entry missing or stale together (hundreds at a worker's start) wait for the first
    /// one's read instead of each reading the row.
    loading: [tokio::sync::Mutex<()>; LOAD_STRIPES],
}

const LOAD_STRIPES: usize = 16;

/// The place of a channel's provider in [`Inner::known`].
fn slot(channel: Channel) -> usize {
    match channel {
        Channel::Sms => 0,
        Channel::Whatsapp => 1,
    }
}

fn channel_of(provider: &str) -> Channel {
    if provider == TWILIO {
        Channel::Sms
    } else {
        Channel::Whatsapp
    }
}

impl AccountProviders {
    /// # Errors
    /// `credentials.key` is set but is not a key (config validation refuses that first).
    pub fn new(store: Store, settings: &Settings) -> Result<AccountProviders, SealError> {
        Ok(AccountProviders {
            inner: Arc::new(Inner {
                key: SealingKey::from_config(&settings.credentials.key)?,
                store,
                settings: settings.clone(),
                known: Mutex::new(HashMap::new()),
                loading: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            }),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, [Option<Known>; 2]>> {
        self.inner
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The deployment's `credentials.key`, if it has one (it also seals the keys that sign
    /// Twilio-format status callbacks).
    pub fn sealing_key(&self) -> Option<&SealingKey> {
        self.inner.key.as_ref()
    }

    fn key(&self) -> Result<&SealingKey, CredentialError> {
        self.inner.key.as_ref().ok_or(CredentialError::NoKey)
    }

    /// Seals and stores an account's credentials, replacing any it had for the provider.
    ///
    /// # Errors
    /// No `credentials.key`, or the store refused the write.
    pub async fn save(
        &self,
        account: &AccountId,
        credentials: Credentials,
    ) -> Result<(SaveOutcome, Option<CredentialsView>), CredentialError> {
        let key = self.key()?;
        let (provider, webhook_key, public, secrets, verify) = match credentials {
            Credentials::Twilio {
                account_sid,
                auth_token,
                senders,
            } => (
                TWILIO,
                account_sid.clone(),
                PublicPart::Twilio {
                    account_sid,
                    senders,
                },
                serde_json::to_vec(&TwilioSecrets {
                    auth_token: auth_token.expose_secret().to_owned(),
                }),
                None,
            ),
            Credentials::WhatsappCloud {
                phone_number_id,
                access_token,
                app_secret,
                verify_token,
                per_second,
            } => (
                WHATSAPP_CLOUD,
                phone_number_id.clone(),
                PublicPart::WhatsappCloud {
                    phone_number_id,
                    per_second,
                },
                serde_json::to_vec(&WhatsappSecrets {
                    access_token: access_token.expose_secret().to_owned(),
                    app_secret: app_secret.expose_secret().to_owned(),
                    verify_token: verify_token.as_ref().map(|t| t.expose_secret().to_owned()),
                }),
                verify_token.map(|t| verify_token_hash(t.expose_secret())),
            ),
        };
        let secrets = secrets.map_err(|e| CredentialError::Unreadable(e.to_string()))?;
        let public = serde_json::to_string(&public)
            .map_err(|e| CredentialError::Unreadable(e.to_string()))?;
        let now = Timestamp::now();
        let outcome = self
            .inner
            .store
            .save_credentials(StoredCredentials {
                account_id: account.clone(),
                provider: provider.to_owned(),
                webhook_key,
                public,
                sealed: key.seal(&secrets, &context(account, provider)),
                key_id: key.id().to_owned(),
                verify_token_sha256: verify,
                created_at: now,
                updated_at: now,
            })
            .await?;
        self.forget(account, provider);
        let view = match outcome {
            SaveOutcome::Saved => self.view(account, provider).await?,
            SaveOutcome::TakenByOtherAccount => None,
        };
        Ok((outcome, view))
    }

    /// Removes an account's credentials for `provider`; its messages go back to the
    /// deployment's provider. True if there were some.
    ///
    /// # Errors
    /// The store refused the write.
    pub async fn delete(
        &self,
        account: &AccountId,
        provider: &'static str,
    ) -> Result<bool, CredentialError> {
        let deleted = self
            .inner
            .store
            .delete_credentials(account, provider)
            .await?;
        self.forget(account, provider);
        Ok(deleted)
    }

    /// The account's credentials for `provider`, as they may be shown.
    ///
    /// # Errors
    /// The store could not be read, or the stored row is not Herald's.
    pub async fn view(
        &self,
        account: &AccountId,
        provider: &str,
    ) -> Result<Option<CredentialsView>, CredentialError> {
        let stored = self.inner.store.credentials(account, provider).await?;
        stored.as_ref().map(view_of).transpose()
    }

    /// Every provider the account brought, as it may be shown.
    ///
    /// # Errors
    /// As [`AccountProviders::view`].
    pub async fn views(
        &self,
        account: &AccountId,
    ) -> Result<Vec<CredentialsView>, CredentialError> {
        let stored = self.inner.store.all_credentials(account).await?;
        stored.iter().map(view_of).collect()
    }

    fn forget(&self, account: &AccountId, provider: &'static str) {
        if let Some(known) = self.known().get_mut(account)
            && let Some(entry) = known.get_mut(slot(channel_of(provider)))
        {
            *entry = None;
        }
    }

    /// What this process loaded for the account's `channel` within [`RECHECK_AFTER`].
    fn fresh(&self, account: &AccountId, channel: Channel) -> Option<Option<Arc<dyn Provider>>> {
        self.known()
            .get(account)
            .and_then(|known| known.get(slot(channel))?.as_ref())
            .filter(|known| known.checked.elapsed() < RECHECK_AFTER)
            .map(|known| known.provider.clone())
    }

    /// The account's own provider for `channel`, if it brought one.
    ///
    /// # Errors
    /// Its credentials cannot be read (another or no `credentials.key`, a damaged row) or
    /// the store failed: its messages must not go out through the deployment's provider
    /// instead, so the caller retries later.
    pub async fn for_channel(
        &self,
        account: &AccountId,
        channel: Channel,
    ) -> Result<Option<Arc<dyn Provider>>, CredentialError> {
        let provider = provider_of(channel);
        if let Some(fresh) = self.fresh(account, channel) {
            return Ok(fresh);
        }
        // Equal ids must meet in one stripe: `DefaultHasher::new` hashes alike every time.
        let mut hasher = std::hash::DefaultHasher::new();
        account.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % LOAD_STRIPES as u64).unwrap_or(0);
        let _loading = match self.inner.loading.get(stripe) {
            Some(stripe) => Some(stripe.lock().await),
            None => None,
        };
        if let Some(fresh) = self.fresh(account, channel) {
            return Ok(fresh);
        }
        let cached = self
            .known()
            .get(account)
            .and_then(|known| known.get(slot(channel)).cloned().flatten());
        let stored = self.inner.store.credentials(account, provider).await?;
        let updated_at = stored.as_ref().map(|s| s.updated_at);
        let adapter = match (&cached, &stored) {
            // Unchanged since it was built: keep it (and its open connections).
            (Some(known), Some(_)) if known.updated_at == updated_at => known.provider.clone(),
            (_, Some(s)) => Some(self.build(s)?),
            (_, None) => None,
        };
        let mut known = self.known();
        let entry = known.entry(account.clone()).or_default();
        if let Some(entry) = entry.get_mut(slot(channel)) {
            *entry = Some(Known {
                provider: adapter.clone(),
                updated_at,
                checked: Instant::now(),
            });
        }
        Ok(adapter)
    }

    /// The account whose credentials name `webhook_key` (a Twilio AccountSid, a WhatsApp
    /// phone number id) for `provider`, and its adapter, to check and parse a webhook.
    ///
    /// # Errors
    /// As [`AccountProviders::for_channel`].
    pub async fn by_webhook_key(
        &self,
        provider: &str,
        webhook_key: &str,
    ) -> Result<Option<(AccountId, Arc<dyn Provider>)>, CredentialError> {
        let Some(stored) = self
            .inner
            .store
            .credentials_by_webhook_key(provider, webhook_key)
            .await?
        else {
            return Ok(None);
        };
        // Through the cache, so a burst of receipts builds one adapter.
        let adapter = self
            .for_channel(&stored.account_id, channel_of(&stored.provider))
            .await?;
        Ok(adapter.map(|a| (stored.account_id, a)))
    }

    /// Whether some account's WhatsApp credentials have this webhook verify token.
    ///
    /// # Errors
    /// The store could not be read.
    pub async fn verify_token_known(&self, token: &str) -> Result<bool, CredentialError> {
        if token.is_empty() {
            return Ok(false);
        }
        Ok(self
            .inner
            .store
            .verify_token_known(&verify_token_hash(token))
            .await?)
    }

    /// Opens the secrets and builds the adapter the deployment's settings would, with the
    /// account's credentials in place of the deployment's.
    fn build(&self, stored: &StoredCredentials) -> Result<Arc<dyn Provider>, CredentialError> {
        let key = self.key()?;
        let provider = if stored.provider == TWILIO {
            TWILIO
        } else {
            WHATSAPP_CLOUD
        };
        let secrets = key.open(
            &stored.sealed,
            &stored.key_id,
            &context(&stored.account_id, provider),
        )?;
        let public: PublicPart = serde_json::from_str(&stored.public)
            .map_err(|e| CredentialError::Unreadable(e.to_string()))?;
        let unreadable = |e: serde_json::Error| CredentialError::Unreadable(e.to_string());
        let build = |e: anyhow::Error| CredentialError::Build(format!("{e:#}"));
        let mut settings = self.inner.settings.clone();
        Ok(match public {
            PublicPart::Twilio {
                account_sid,
                senders,
            } => {
                let secrets: TwilioSecrets =
                    serde_json::from_slice(&secrets).map_err(unreadable)?;
                let t = &mut settings.providers.twilio;
                t.account_sid = account_sid;
                t.auth_token = SecretString::from(secrets.auth_token);
                let first = senders.first().map(|s| s.from.clone()).unwrap_or_default();
                (t.from, t.messaging_service_sid) = if super::twilio::is_messaging_service(&first) {
                    (String::new(), first)
                } else {
                    (first, String::new())
                };
                t.sender_rates = senders
                    .into_iter()
                    .map(|s| (s.from, s.per_second))
                    .collect();
                Arc::new(TwilioProvider::from_settings(&settings).map_err(build)?)
            }
            PublicPart::WhatsappCloud {
                phone_number_id,
                per_second,
            } => {
                let secrets: WhatsappSecrets =
                    serde_json::from_slice(&secrets).map_err(unreadable)?;
                let w = &mut settings.providers.whatsapp_cloud;
                w.phone_number_id = phone_number_id;
                w.access_token = SecretString::from(secrets.access_token);
                w.app_secret = SecretString::from(secrets.app_secret);
                w.verify_token = SecretString::from(secrets.verify_token.unwrap_or_default());
                w.sender_per_second = per_second;
                Arc::new(WhatsappProvider::from_settings(&settings).map_err(build)?)
            }
        })
    }
}

/// What a sealed value is bound to: its account and provider, so it opens in no other row.
fn context(account: &AccountId, provider: &str) -> Vec<u8> {
    format!("herald credentials v1\0{}\0{provider}", account.as_str()).into_bytes()
}

fn verify_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn view_of(stored: &StoredCredentials) -> Result<CredentialsView, CredentialError> {
    let public: PublicPart = serde_json::from_str(&stored.public)
        .map_err(|e| CredentialError::Unreadable(e.to_string()))?;
    let (provider, secrets) = match &public {
        PublicPart::Twilio { .. } => (TWILIO, vec!["auth_token"]),
        PublicPart::WhatsappCloud { .. } => {
            let mut secrets = vec!["access_token", "app_secret"];
            if stored.verify_token_sha256.is_some() {
                secrets.push("verify_token");
            }
            (WHATSAPP_CLOUD, secrets)
        }
    };
    Ok(CredentialsView {
        provider,
        public,
        secrets,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}
