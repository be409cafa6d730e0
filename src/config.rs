//! Settings: `config/default.toml` compiled in, then the `--config` file, then `HERALD__…`
//! environment variables. Raw values become domain types here, and one validation pass fails
//! fast with a sentence, so the rest of Herald never sees a nonsensical setting.

use crate::domain::{Money, Region};
use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub accounts: AccountSettings,
    pub messaging: MessagingSettings,
    pub pricing: PricingSettings,
    pub limits: LimitSettings,
    pub queue: QueueSettings,
    pub workers: WorkerSettings,
    pub providers: ProviderSettings,
    pub campaigns: CampaignSettings,
    pub credentials: CredentialSettings,
    pub inbound: InboundSettings,
    pub webhooks: WebhookSettings,
    pub events: EventSettings,
    pub redis: RedisSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Whether customer URLs may be on loopback, private or link-local addresses.
    pub allow_private_targets: bool,
    pub timeout_ms: u64,
    /// Posts in flight at once per account (four times as many to an endpoint that answers
    /// fast: `workers::webhook_lanes`), and in all.
    pub per_account_in_flight: usize,
    pub in_flight: usize,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_jitter: f64,
    /// A delivery is retried for this long, then given up.
    pub retry_for_seconds: u64,
    /// An account's webhook failing for this long without a success is disabled.
    pub disable_after_seconds: u64,
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventSettings {
    /// Events (and finished deliveries) are kept this long for `Last-Event-ID` and the
    /// deliveries list.
    pub retention_hours: u64,
    /// How often the event stream looks for new events.
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InboundSettings {
    /// The account (name or id) a message to the deployment's numbers goes to when no
    /// account has sent to its number (empty: such messages are kept as unroutable).
    pub fallback_account: String,
    /// The answer to STOP and to HELP (empty: none is sent).
    pub stop_reply: String,
    pub help_reply: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CredentialSettings {
    /// Seals the provider credentials accounts set through the API (base64 of 32 bytes;
    /// empty: accounts cannot set their own).
    pub key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub metrics_token: SecretString,
    /// Herald's address as providers reach it (`https://herald.example.com`): callback URLs
    /// are built from it and webhook signatures are checked against it.
    pub public_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub sqlite_readers: u32,
    pub synchronous: Synchronous,
    pub commit_batch_max: usize,
    pub busy_timeout_ms: u64,
    pub max_page_count: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub bootstrap_api_key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AccountSettings {
    pub bootstrap_balance: Money,
    pub daily_limit: i64,
    pub default_currency: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessagingSettings {
    #[serde(deserialize_with = "region")]
    pub default_region: Region,
    pub max_messages_per_batch: usize,
    pub reject_fixed_line: bool,
    pub validity_period_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PricingSettings {
    pub sms_per_segment: Money,
    pub whatsapp_per_message: Money,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    pub api_requests_per_second: u32,
    pub api_burst: u32,
    pub account_per_minute: u32,
}

/// Redis, for limits that hold across every process.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Empty: each process enforces the limits alone. A secret: it may carry a password.
    pub url: SecretString,
    /// The share of each limit a process keeps to while Redis cannot be reached.
    pub local_share: f64,
    /// How far ahead one round trip may reserve a limit's permits.
    pub reserve_ahead_ms: u64,
    /// Connecting and each command give up after this long.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    pub batch_size: usize,
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_jitter: f64,
    pub lease_seconds: u64,
    pub heartbeat_seconds: u64,
    pub shutdown_timeout_seconds: u64,
    /// How often `sent` messages past their provider's receipt time are looked up.
    pub reconcile_every_seconds: u64,
    /// Most lookups per round (each is one request to the provider).
    pub reconcile_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    pub sms: String,
    pub whatsapp: String,
    /// The provider a channel's sends go to while its primary keeps failing ("": none).
    pub sms_fallback: String,
    pub whatsapp_fallback: String,
    pub failover: FailoverSettings,
    pub mock: MockSettings,
    pub twilio: TwilioSettings,
    pub whatsapp_cloud: WhatsappCloudSettings,
}

/// When a channel's primary counts as failing, and when it is tried again.
#[derive(Debug, Clone, Deserialize)]
pub struct FailoverSettings {
    /// Transient failures in a row (5xx, 429, timeouts) that open the circuit.
    pub failure_threshold: u32,
    /// How long sends go to the fallback before one is tried at the primary again.
    pub open_seconds: u64,
}

/// Provider names `providers.sms` / `providers.whatsapp` may hold.
pub const MOCK: &str = "mock";
pub const TWILIO: &str = "twilio";
pub const WHATSAPP_CLOUD: &str = "whatsapp_cloud";

/// Meta's WhatsApp Business Cloud API (`providers.whatsapp = "whatsapp_cloud"`).
#[derive(Debug, Clone, Deserialize)]
pub struct WhatsappCloudSettings {
    pub base_url: String,
    /// The Graph API version in the path (`v23.0`).
    pub api_version: String,
    /// The business phone number's id (not the number itself): every message goes out from
    /// it, and its sender limit is this number's.
    pub phone_number_id: String,
    /// Bearer token of a system user; never logged (its `Debug` is redacted).
    pub access_token: SecretString,
    /// Key of `X-Hub-Signature-256` on webhook POSTs; never logged.
    pub app_secret: SecretString,
    /// What Meta's webhook verification GET must present as `hub.verify_token`.
    pub verify_token: SecretString,
    pub sender_per_second: u32,
    pub timeout_ms: u64,
}

impl WhatsappCloudSettings {
    /// Whether webhooks can be verified: the app secret (POSTs) is set.
    pub fn webhooks_configured(&self) -> bool {
        use secrecy::ExposeSecret;
        !self.app_secret.expose_secret().is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TwilioSettings {
    pub base_url: String,
    pub account_sid: String,
    /// Basic-auth password and the key of `X-Twilio-Signature`; never logged (its `Debug`
    /// is redacted).
    pub auth_token: SecretString,
    pub from: String,
    pub messaging_service_sid: String,
    pub sender_per_second: u32,
    /// Per sender (a number, alphanumeric id or Messaging Service SID), a rate other than
    /// `sender_per_second`: toll-free numbers and short codes send faster than long codes.
    #[serde(default)]
    pub sender_rates: std::collections::BTreeMap<String, u32>,
    pub timeout_ms: u64,
    /// How long a `sent` message waits for its status callback before Herald asks Twilio.
    pub lookup_after_seconds: u64,
    /// Messages older than this are no longer looked up (Twilio keeps `sent` forever when a
    /// carrier never reports).
    pub lookup_max_age_seconds: u64,
}

impl TwilioSettings {
    /// Whether credentials are set, so webhooks can be verified and lookups made.
    pub fn configured(&self) -> bool {
        use secrecy::ExposeSecret;
        !self.account_sid.is_empty() && !self.auth_token.expose_secret().is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MockSettings {
    pub accept_delay_ms: u64,
    pub deliver_after_ms: u64,
    pub read_after_ms: u64,
    pub sms_read_receipts: bool,
    pub sender_per_second: u32,
    pub default_sender: String,
    /// The mock network's journal: "" beside the database, "off" for none, else a path.
    pub handover_log: String,
    pub idempotency_window_seconds: u64,
    pub failure_rate: f64,
    pub throttle_rate: f64,
    pub throttle_retry_after_seconds: u64,
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    pub latency_jitter_ms: u64,
    /// Share of delivered recipients who answer, `reply_after_ms` after delivery.
    pub reply_rate: f64,
    /// Of those who answer, the share who answer STOP (the others `reply_text`).
    pub reply_stop_rate: f64,
    pub reply_after_ms: u64,
    pub reply_text: String,
}

impl Settings {
    /// Where the mock network keeps its journal (`providers.mock.handover_log`): by default
    /// beside the database, so each database has its own network; `None` when turned off.
    pub fn mock_journal(&self) -> Option<std::path::PathBuf> {
        let configured = self.providers.mock.handover_log.as_str();
        match configured {
            "off" => None,
            "" => {
                let db = self
                    .database
                    .url
                    .strip_prefix("sqlite://")
                    .or_else(|| self.database.url.strip_prefix("sqlite:"))?;
                let folder = std::path::Path::new(db).parent()?;
                Some(folder.join("mock-network.log"))
            }
            path => Some(std::path::PathBuf::from(path)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CampaignSettings {
    pub templates_dir: String,
    pub max_upload_bytes: u64,
    pub max_recipients: i64,
    pub fanout_batch: usize,
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

fn region<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Region, D::Error> {
    let code = String::deserialize(d)?;
    Region::parse(&code).map_err(serde::de::Error::custom)
}

impl Settings {
    /// Loads the layers in order (default, file, environment) and validates the result.
    ///
    /// # Errors
    /// A missing `--config` file, a value of the wrong type, or a setting out of range.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        Self::load_with(file, &[])
    }

    /// As [`Settings::load`], with extra TOML layers merged between the file and the
    /// environment (tests add `config/test.toml` this way).
    pub fn load_with(file: Option<&Path>, extra_toml: &[&str]) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.exists() {
                bail!("the config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        for layer in extra_toml {
            figment = figment.merge(Toml::string(layer));
        }
        figment = figment.merge(Env::prefixed("HERALD__").split("__"));
        let settings: Settings = figment.extract().context("the configuration is invalid")?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        crate::sealing::SealingKey::from_config(&self.credentials.key)?;
        let checks: [(bool, &str); 14] = [
            (
                self.redis.local_share > 0.0 && self.redis.local_share <= 1.0,
                "redis.local_share must be above 0 and at most 1",
            ),
            (
                self.redis.timeout_ms >= 1,
                "redis.timeout_ms must be at least 1",
            ),
            (
                self.server.max_body_bytes >= 1024,
                "server.max_body_bytes must be at least 1024",
            ),
            (
                self.database.max_connections >= 1,
                "database.max_connections must be at least 1",
            ),
            (
                self.database.sqlite_readers >= 1,
                "database.sqlite_readers must be at least 1",
            ),
            (
                self.database.commit_batch_max >= 1,
                "database.commit_batch_max must be at least 1",
            ),
            (
                self.messaging.max_messages_per_batch >= 1,
                "messaging.max_messages_per_batch must be at least 1",
            ),
            (
                self.queue.batch_size >= 1,
                "queue.batch_size must be at least 1",
            ),
            (
                self.workers.concurrency >= 1,
                "workers.concurrency must be at least 1",
            ),
            (
                self.workers.max_attempts >= 1,
                "workers.max_attempts must be at least 1",
            ),
            (
                (0.0..1.0).contains(&self.workers.backoff_jitter),
                "workers.backoff_jitter must be in [0, 1)",
            ),
            (
                self.campaigns.fanout_batch >= 1,
                "campaigns.fanout_batch must be at least 1",
            ),
            (
                self.campaigns.max_recipients >= 1,
                "campaigns.max_recipients must be at least 1",
            ),
            (
                self.accounts.daily_limit >= 0,
                "accounts.daily_limit must not be negative",
            ),
        ];
        if let Some((_, sentence)) = checks.iter().find(|(ok, _)| !ok) {
            bail!("{sentence}");
        }
        for (key, name) in [
            ("sms", &self.providers.sms),
            ("sms_fallback", &self.providers.sms_fallback),
        ] {
            match name.as_str() {
                MOCK => {}
                "" if key == "sms_fallback" => {}
                TWILIO => self.validate_twilio()?,
                name => bail!(
                    "providers.{key} = \"{name}\" is not an SMS provider Herald has (\"mock\" or \"twilio\")"
                ),
            }
        }
        if self.providers.sms_fallback == self.providers.sms {
            bail!(
                "providers.sms_fallback must name another provider than providers.sms, or be \"\""
            );
        }
        for (key, name) in [
            ("whatsapp", &self.providers.whatsapp),
            ("whatsapp_fallback", &self.providers.whatsapp_fallback),
        ] {
            match name.as_str() {
                MOCK => {}
                "" if key == "whatsapp_fallback" => {}
                WHATSAPP_CLOUD => self.validate_whatsapp_cloud()?,
                name => bail!(
                    "providers.{key} = \"{name}\" is not a WhatsApp provider Herald has (\"mock\" or \"whatsapp_cloud\")"
                ),
            }
        }
        if self.providers.whatsapp_fallback == self.providers.whatsapp {
            bail!(
                "providers.whatsapp_fallback must name another provider than providers.whatsapp, or be \"\""
            );
        }
        if self.providers.failover.failure_threshold == 0
            || self.providers.failover.open_seconds == 0
        {
            bail!(
                "providers.failover.failure_threshold and providers.failover.open_seconds must be at least 1"
            );
        }
        if self.workers.reconcile_every_seconds == 0 || self.workers.reconcile_batch == 0 {
            bail!("workers.reconcile_every_seconds and workers.reconcile_batch must be at least 1");
        }
        let mock = &self.providers.mock;
        for (key, rate) in [
            ("failure_rate", mock.failure_rate),
            ("throttle_rate", mock.throttle_rate),
            ("timeout_rate", mock.timeout_rate),
            ("reply_rate", mock.reply_rate),
            ("reply_stop_rate", mock.reply_stop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                bail!("providers.mock.{key} must be between 0 and 1");
            }
        }
        if self.workers.heartbeat_seconds == 0 {
            bail!("workers.heartbeat_seconds must be at least 1");
        }
        // Leases are renewed every heartbeat; a lease that could run out between two beats
        // would let a live worker's message be claimed again.
        if self.workers.lease_seconds < 2 * self.workers.heartbeat_seconds + 1 {
            bail!("workers.lease_seconds must be more than twice workers.heartbeat_seconds");
        }
        Ok(())
    }

    /// What `providers.sms = "twilio"` needs; each sentence names the setting to fix.
    fn validate_twilio(&self) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        let t = &self.providers.twilio;
        if !(t.account_sid.starts_with("AC") && t.account_sid.len() == 34) {
            bail!(
                "providers.sms = \"twilio\" needs providers.twilio.account_sid (AC followed by 32 characters, from the Twilio console)"
            );
        }
        if t.auth_token.expose_secret().is_empty() {
            bail!("providers.sms = \"twilio\" needs providers.twilio.auth_token");
        }
        if t.from.is_empty() && t.messaging_service_sid.is_empty() {
            bail!(
                "providers.sms = \"twilio\" needs a sender: providers.twilio.from (a number or alphanumeric sender id) or providers.twilio.messaging_service_sid"
            );
        }
        if !(t.messaging_service_sid.is_empty() || t.messaging_service_sid.starts_with("MG")) {
            bail!("providers.twilio.messaging_service_sid must start with MG");
        }
        if !is_http_url(&t.base_url) {
            bail!("providers.twilio.base_url must be an http(s) URL");
        }
        if !is_http_url(&self.server.public_url) {
            bail!(
                "providers.sms = \"twilio\" needs server.public_url: the https URL Twilio reaches Herald at (status callbacks are sent to it and their signatures checked against it)"
            );
        }
        if t.timeout_ms == 0 {
            bail!("providers.twilio.timeout_ms must be at least 1");
        }
        Ok(())
    }

    /// What `providers.whatsapp = "whatsapp_cloud"` needs; each sentence names the setting.
    fn validate_whatsapp_cloud(&self) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        let w = &self.providers.whatsapp_cloud;
        let needs = "providers.whatsapp = \"whatsapp_cloud\" needs";
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        if !digits(&w.phone_number_id) {
            bail!(
                "{needs} providers.whatsapp_cloud.phone_number_id: the digits of the phone number's id in WhatsApp Manager (not the number itself)"
            );
        }
        if w.access_token.expose_secret().is_empty() {
            bail!("{needs} providers.whatsapp_cloud.access_token (a system user's token)");
        }
        if w.app_secret.expose_secret().is_empty() {
            bail!(
                "{needs} providers.whatsapp_cloud.app_secret (the Meta app's secret: webhook signatures are checked with it)"
            );
        }
        if w.verify_token.expose_secret().is_empty() {
            bail!(
                "{needs} providers.whatsapp_cloud.verify_token (any secret string; enter the same in the app's webhook settings)"
            );
        }
        let numeric = w
            .api_version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(major, minor)| digits(major) && digits(minor));
        if !numeric {
            bail!(
                "providers.whatsapp_cloud.api_version must be a Graph API version such as \"v23.0\""
            );
        }
        if !is_http_url(&w.base_url) {
            bail!("providers.whatsapp_cloud.base_url must be an http(s) URL");
        }
        if w.timeout_ms == 0 {
            bail!("providers.whatsapp_cloud.timeout_ms must be at least 1");
        }
        Ok(())
    }

    pub fn validity_period(&self) -> Duration {
        Duration::from_secs(self.messaging.validity_period_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_load_and_validate() {
        let s = Settings::load(None);
        assert!(s.is_ok(), "{s:?}");
    }

    #[test]
    fn a_bad_value_is_refused_with_a_sentence() {
        let s = Settings::load_with(None, &["[workers]\nconcurrency = 0\n"]);
        let err = s.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("workers.concurrency"), "{err}");
    }

    fn twilio_error(extra: &str) -> String {
        let base = "[providers]\nsms = \"twilio\"\n[server]\npublic_url = \"https://h.example\"\n";
        Settings::load_with(None, &[base, extra])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn twilio_without_credentials_or_sender_is_refused_with_the_setting_named() {
        let sid = "AC0123456789abcdef0123456789abcdef";
        let cases = [
            ("", "providers.twilio.account_sid"),
            (
                &format!("[providers.twilio]\naccount_sid = \"{sid}\"\n"),
                "providers.twilio.auth_token",
            ),
            (
                &format!("[providers.twilio]\naccount_sid = \"{sid}\"\nauth_token = \"t\"\n"),
                "providers.twilio.from",
            ),
        ];
        for (extra, named) in cases {
            let err = twilio_error(extra);
            assert!(err.contains(named), "{extra:?}: {err}");
        }
        let ok = format!(
            "[providers.twilio]\naccount_sid = \"{sid}\"\nauth_token = \"t\"\nfrom = \"+15017122661\"\n"
        );
        assert_eq!(twilio_error(&ok), "");
    }

    fn whatsapp_error(extra: &str) -> String {
        let base = "[providers]\nwhatsapp = \"whatsapp_cloud\"\n";
        Settings::load_with(None, &[base, extra])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn whatsapp_cloud_without_each_setting_is_refused_with_the_setting_named() {
        let full = [
            ("phone_number_id", "\"106540352242922\""),
            ("access_token", "\"t\""),
            ("app_secret", "\"s\""),
            ("verify_token", "\"v\""),
        ];
        for (missing, _) in full {
            let table: String = full
                .iter()
                .filter(|(k, _)| *k != missing)
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect();
            let err = whatsapp_error(&format!("[providers.whatsapp_cloud]\n{table}"));
            assert!(
                err.contains(&format!("providers.whatsapp_cloud.{missing}")),
                "{missing}: {err}"
            );
        }
        let table: String = full.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let ok = format!("[providers.whatsapp_cloud]\n{table}");
        assert_eq!(whatsapp_error(&ok), "");
        let err = whatsapp_error(&format!("{ok}api_version = \"23\"\n"));
        assert!(err.contains("api_version"), "{err}");
        let err = whatsapp_error(&ok.replace("\"106540352242922\"", "\"+1 555\""));
        assert!(err.contains("phone_number_id"), "{err}");
        let fallback = |name: &str| {
            let base = format!(
                "[providers]\nwhatsapp = \"whatsapp_cloud\"\nwhatsapp_fallback = \"{name}\"\n{ok}"
            );
            Settings::load_with(None, &[&base])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(fallback("mock"), "");
        assert!(fallback("whatsapp_cloud").contains("whatsapp_fallback"));
        assert!(fallback("twilio").contains("whatsapp_fallback"));
    }

    #[test]
    fn whatsapp_secrets_never_show_in_debug_output() {
        let s = Settings::load_with(
            None,
            &[
                "[providers.whatsapp_cloud]\naccess_token = \"tok-secret-1\"\napp_secret = \"app-secret-2\"\nverify_token = \"verify-secret-3\"\n",
            ],
        );
        let shown = format!("{s:?}");
        for secret in ["tok-secret-1", "app-secret-2", "verify-secret-3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn the_auth_token_never_shows_in_debug_output() {
        let s = Settings::load_with(
            None,
            &["[providers.twilio]\nauth_token = \"very-secret-token\"\n"],
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
    }
}
