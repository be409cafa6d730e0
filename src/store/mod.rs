//! The store: every durable fact about accounts, keys and messages.
//!
//! Callers see operations named after what they do (`accept`, `claim_due`,
//! `record_outcomes`, `apply_status_updates`, …) and the types in this module; the SQL lives
//! per dialect below `store/<dialect>/`, and the rules that decide (money, limits,
//! idempotency, fairness, status moves, keywords, the webhook outbox) once, in
//! `store::{accept, delivery, receive, outbox, search}`, over each dialect's statements.
//! SQLite is the embedded default; PostgreSQL carries the same for many processes.
//!
//! Writes of one process are committed in groups: on SQLite by a single writer task (SQLite
//! has one writer anyway, and handing the lock from connection to connection costs
//! milliseconds of busy-waiting, while one transaction holding a hundred requests costs about
//! as much as one holding a single request); on PostgreSQL by a batching task per kind of
//! write (accepts, outcomes, receipts, inbound).

pub(crate) mod accept;
mod campaigns;
pub mod credentials;
pub(crate) mod delivery;
pub mod events;
pub mod inbound;
pub(crate) mod outbox;
pub mod overview;
mod postgres;
pub(crate) mod receive;
mod rows;
pub mod search;
mod sqlite;

use crate::config::DatabaseSettings;
use crate::domain::{
    AccountId, ApiKeyId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp,
    WhatsappTemplate,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub use campaigns::{
    ActiveCampaign, CampaignCommand, CampaignCounts, CampaignTotals, CampaignView, FanOutRequest,
    FanOutResult, FinishCampaign, HELD, NewCampaign, OptOut, Rejection, StagedRecipient, StatsRow,
    StoredTemplate,
};
pub use sqlite::SqliteStore;

/// A message ready to be stored, already validated and priced.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: MessageId,
    pub campaign_id: Option<String>,
    pub channel: Channel,
    pub phone_number: String,
    pub sender_id: Option<String>,
    pub body: String,
    pub attachment_url: Option<String>,
    /// Send as this WhatsApp template instead of as free text (WhatsApp only).
    pub whatsapp_template: Option<WhatsappTemplate>,
    pub priority: Priority,
    pub segments: u32,
    pub cost: Money,
    pub due_at: Timestamp,
    pub expires_at: Timestamp,
    pub status_callback: Option<String>,
    /// Set when `status_callback` gets Twilio's format (the Twilio-compatible API): the API
    /// key that signs it, sealed for this message (`events::twilio_format`).
    pub twilio_callback_signer: Option<String>,
    pub metadata: Option<String>,
}

/// What the writer decided for one message of an [`AcceptRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    Accepted,
    /// The number opted out of this account (SPEC §7).
    OptedOut,
    InsufficientBalance,
    DailyLimitExceeded,
}

/// An HTTP answer kept for idempotent replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// The key and request fingerprint of an idempotent request.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub request_hash: [u8; 32],
}

/// Renders the answer once the writer knows each message's outcome, inside the transaction,
/// so the stored replay is exactly what the first caller got.
pub type RenderResponse = Box<dyn FnOnce(&[ItemOutcome]) -> StoredResponse + Send>;

/// One API request's messages, accepted (or refused) atomically.
pub struct AcceptRequest {
    pub account_id: AccountId,
    pub idempotency: Option<IdempotencyRecord>,
    pub messages: Vec<NewMessage>,
    pub render: RenderResponse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Processed now; this is the answer (also stored under the idempotency key, if any).
    Done(StoredResponse),
    /// The same key and body were seen before: the first answer, unchanged.
    Replayed(StoredResponse),
    /// The same key came with another body.
    Conflict,
}

/// A message a worker has claimed for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub message_id: MessageId,
    pub account_id: AccountId,
    pub channel: Channel,
    pub phone_number: String,
    pub sender_id: Option<String>,
    pub body: String,
    pub attachment_url: Option<String>,
    pub whatsapp_template: Option<WhatsappTemplate>,
    pub priority: Priority,
    /// The campaign that created it (or the free-form id a client gave).
    pub campaign_id: Option<String>,
    /// Attempts including this one.
    pub attempts: u32,
    pub expires_at: Timestamp,
    pub cost: Money,
    /// This claim's fencing token: its outcome is recorded only while it still holds.
    pub claim: ClaimToken,
    /// Set when an earlier attempt's outcome is unknown (its worker died mid-delivery): when
    /// that attempt started. The provider is asked whether it arrived before sending again.
    pub in_doubt_since: Option<Timestamp>,
    /// When this claim took it: its `sending` time, which is never before the message's
    /// last change (the claim's clock is read before its statement runs).
    pub claimed_at: Timestamp,
    /// The provider an earlier attempt may have handed the message to (see
    /// [`DeliveryOutcome::Retry`]); `None` while any provider may take it.
    pub bound_to: Option<String>,
    /// The recipient opted out after the message was accepted. Only ever set on a message
    /// in doubt: any other is failed in the claiming transaction; this one is failed by the
    /// worker once the provider said the earlier attempt did not arrive.
    pub opted_out: bool,
}

/// The fencing token of one claim of a message (`message.claim_seq` when it was claimed).
/// Every claim, and every release of an orphaned claim, moves the message's token on, so an
/// outcome carrying an older token comes from a worker that lost the message and is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimToken(i64);

impl ClaimToken {
    pub(crate) fn from_stored(seq: i64) -> Self {
        Self(seq)
    }

    pub(crate) fn value(self) -> i64 {
        self.0
    }
}

/// What a worker reports about one message it claimed.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub message_id: MessageId,
    pub claim: ClaimToken,
    pub outcome: DeliveryOutcome,
}

impl DeliveryReport {
    pub fn of(message: &ClaimedMessage, outcome: DeliveryOutcome) -> Self {
        Self {
            message_id: message.message_id.clone(),
            claim: message.claim,
            outcome,
        }
    }
}

/// What happened when a worker tried to deliver a claimed message.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Sent {
        provider: &'static str,
        provider_message_id: String,
        at: Timestamp,
    },
    /// A transient failure: try again at `due_at`.
    Retry {
        due_at: Timestamp,
        error_code: String,
        error_message: String,
        /// The provider that may have taken the message (it got the request, no answer came
        /// back): every later attempt must go to it, never to another provider.
        bound_to: Option<&'static str>,
        /// Set with `bound_to`: when the attempt whose answer never came started. It is in
        /// doubt like one whose worker died, so the next attempt asks the provider first.
        in_doubt_since: Option<Timestamp>,
    },
    /// The message is in doubt (since `in_doubt_since`) and the provider could not be asked
    /// whether the earlier attempt arrived: ask again at `due_at`, sending nothing meanwhile.
    Unresolved {
        due_at: Timestamp,
        in_doubt_since: Timestamp,
        error_code: String,
        error_message: String,
    },
    /// Will never be sent: permanent failure, attempts exhausted, expired, opted out.
    Unsent {
        status: MessageStatus,
        error_code: String,
        error_message: String,
        at: Timestamp,
    },
    /// The worker gave the message back untouched (shutdown before sending).
    Released,
    /// The worker gave the message back untouched because its campaign was paused.
    Held,
}

/// A provider's report about a message it accepted (a receipt), whatever its wire format.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub provider: &'static str,
    pub provider_message_id: String,
    pub status: MessageStatus,
    pub at: Timestamp,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// Where a reconciliation pass has got to: messages are visited in (last change, id) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptCursor {
    pub updated_at: Timestamp,
    pub message_id: String,
}

impl ReceiptCursor {
    /// Just before every message that changed at or after `at`.
    pub fn from(at: Timestamp) -> Self {
        Self {
            updated_at: at,
            message_id: String::new(),
        }
    }
}

/// A `sent` message still waiting for its receipt.
#[derive(Debug, Clone)]
pub struct AwaitingReceipt {
    /// Whose message: an account with its own provider account is asked about through it.
    pub account_id: AccountId,
    pub provider_message_id: String,
    pub cursor: ReceiptCursor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateResult {
    Applied,
    /// The message is already at or past this status: a late or repeated receipt.
    Stale,
    /// No message carries this provider id (yet: the receipt may have overtaken our write).
    /// It is held on disk and applied when the send it reports on is recorded.
    Held,
}

/// The account behind an API key.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub api_key_id: ApiKeyId,
    pub account_id: AccountId,
}

#[derive(Debug, Clone)]
pub struct Balance {
    pub available: Money,
    pub currency: String,
    pub sent_today: i64,
    pub accepted_today: i64,
    pub daily_limit: i64,
}

#[derive(Debug, Clone)]
pub struct MessageView {
    pub message_id: MessageId,
    pub status: MessageStatus,
    pub phone_number: String,
    pub channel: Channel,
    pub priority: Priority,
    pub segments: u32,
    pub cost: Money,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: Timestamp,
    /// Oldest first, in lifecycle order.
    pub history: Vec<(MessageStatus, Timestamp)>,
}

impl MessageView {
    pub fn reached(&self, status: MessageStatus) -> Option<Timestamp> {
        self.history
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, at)| *at)
    }
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub balance: Money,
    pub currency: String,
    pub daily_limit: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an account named `{0}` already exists")]
    AccountExists(String),
    #[error("no account is named or numbered `{0}`")]
    NoSuchAccount(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("the transaction this operation was part of failed")]
    CommitFailed(#[source] Arc<sqlx::Error>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
    /// A batch of writes this one was part of was refused (PostgreSQL's batching tasks
    /// answer each caller with this; the error itself cannot be cloned).
    #[error("the database refuses writes: {}", .0.reason())]
    Refused(WriteRefusal),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Why the database refuses writes. These are conditions of the machine, not of the request:
/// the same write succeeds once an operator (or time) clears them, so callers are told to
/// retry rather than that something broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRefusal {
    /// SQLITE_FULL: the disk, or `database.max_page_count`, has no room left.
    DiskFull,
    /// SQLITE_IOERR: the operating system failed a read or write of the file.
    Io,
    /// SQLITE_BUSY / SQLITE_LOCKED past the busy timeout: another process holds the lock.
    Busy,
    /// SQLITE_READONLY: the file or its folder cannot be written.
    ReadOnly,
}

impl WriteRefusal {
    /// Classifies a database error by SQLite's primary result code (the low byte of the
    /// extended code sqlx reports) or PostgreSQL's SQLSTATE; `None` for everything else
    /// (a bug, a constraint).
    pub fn of(e: &sqlx::Error) -> Option<WriteRefusal> {
        let sqlx::Error::Database(db) = e else {
            return None;
        };
        // PostgreSQL names its conditions by SQLSTATE.
        if db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some()
        {
            return match db.code()?.as_ref() {
                "53100" => Some(Self::DiskFull),
                "58030" => Some(Self::Io),
                "55P03" => Some(Self::Busy),
                "25006" => Some(Self::ReadOnly),
                _ => None,
            };
        }
        let code: i32 = db.code()?.parse().ok()?;
        match code & 0xff {
            13 => Some(Self::DiskFull),
            10 => Some(Self::Io),
            5 | 6 => Some(Self::Busy),
            8 => Some(Self::ReadOnly),
            _ => None,
        }
    }

    /// What an operator reads in `/readyz` and the logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::DiskFull => "disk full",
            Self::Io => "I/O error",
            Self::Busy => "busy (another process holds the write lock)",
            Self::ReadOnly => "read-only",
        }
    }
}

impl StoreError {
    /// Whether this error is the database refusing writes, and why.
    pub fn refusal(&self) -> Option<WriteRefusal> {
        match self {
            Self::CommitFailed(e) => WriteRefusal::of(e),
            Self::Database(e) => WriteRefusal::of(e),
            Self::Refused(refusal) => Some(*refusal),
            _ => None,
        }
    }
}

/// How long a refused write keeps `/readyz` unready. A later small write that succeeds (a
/// heartbeat rewriting one row in place) proves nothing about room for new rows, so only
/// this long without a refusal counts as recovered; probes then cost no write at all.
const REFUSAL_MEMORY: Duration = Duration::from_secs(3);

/// The writer's recent record: the last refusal, and whether it was logged.
#[derive(Default)]
pub(crate) struct WriteHealth {
    last: std::sync::Mutex<Option<(std::time::Instant, WriteRefusal)>>,
}

impl WriteHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(std::time::Instant, WriteRefusal)>> {
        // A panic while holding this lock cannot leave the Option half-updated.
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a refused commit. Logs once per episode, not per commit: workers retry every
    /// second and would otherwise repeat the same line for as long as the disk is full.
    pub(crate) fn refused(&self, refusal: WriteRefusal, error: &sqlx::Error) {
        let mut last = self.lock();
        if current(*last).is_none() {
            tracing::warn!(
                error = %error,
                "the database refuses writes: {}; requests answer 503 and workers retry",
                refusal.reason()
            );
        }
        *last = Some((std::time::Instant::now(), refusal));
    }

    /// Records a commit that succeeded; logs the end of an episode once.
    pub(crate) fn committed(&self) {
        let mut last = self.lock();
        if let Some((at, refusal)) = *last
            && current(*last).is_none()
        {
            tracing::info!(
                "the database takes writes again (the last refusal, {}, was {:.1} s ago)",
                refusal.reason(),
                at.elapsed().as_secs_f64()
            );
            *last = None;
        }
    }

    /// The refusal still in memory, if any.
    fn recent(&self) -> Option<WriteRefusal> {
        current(*self.lock())
    }
}

fn current(last: Option<(std::time::Instant, WriteRefusal)>) -> Option<WriteRefusal> {
    last.filter(|(at, _)| at.elapsed() < REFUSAL_MEMORY)
        .map(|(_, refusal)| refusal)
}

/// The database behind the store.
#[derive(Clone)]
enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<postgres::PgStore>),
}

/// Calls the same operation on whichever backend holds the store.
macro_rules! on_backend {
    ($store:expr, $s:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Wakes in-process workers when messages become due, instead of waiting for a poll.
    ready: Arc<Notify>,
    health: Arc<WriteHealth>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database named in the settings.
    ///
    /// # Errors
    /// An unsupported URL, a database that cannot be opened, or a failed migration.
    pub async fn open(settings: &DatabaseSettings) -> StoreResult<Store> {
        let health = Arc::new(WriteHealth::default());
        let url = settings.url.as_str();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(Arc::new(
                postgres::PgStore::open(settings, Arc::clone(&health)).await?,
            ))
        } else {
            Backend::Sqlite(Arc::new(
                SqliteStore::open(settings, Arc::clone(&health)).await?,
            ))
        };
        Ok(Store {
            backend,
            ready: Arc::new(Notify::new()),
            health,
        })
    }

    /// Whether the store's connections are sockets registered with the tokio runtime that
    /// opened them (PostgreSQL): such a pool must not be shared with a second runtime, whose
    /// sockets die with it. SQLite's connections are threads of their own.
    pub fn bound_to_runtime(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Why the database refused a write in the last few seconds, if it did (for `/readyz`).
    pub fn write_refusal(&self) -> Option<WriteRefusal> {
        self.health.recent()
    }

    /// Notified when new work may be due (or spuriously); workers then re-check the
    /// database instead of waiting for their next poll.
    pub fn ready_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.ready)
    }

    pub async fn accept(&self, request: AcceptRequest) -> StoreResult<AcceptOutcome> {
        let outcome = on_backend!(self, s => s.accept(request).await)?;
        self.ready.notify_waiters();
        Ok(outcome)
    }

    /// Claims up to `limit` due messages for `instance_id`, highest priority first. A `fair`
    /// claim first gives each lower lane a share (so `low` never starves); other claims
    /// follow priority strictly.
    pub async fn claim_due(
        &self,
        instance_id: &str,
        limit: usize,
        lease: Duration,
        fair: bool,
    ) -> StoreResult<Vec<ClaimedMessage>> {
        on_backend!(self, s => s.claim_due(instance_id, limit, lease, fair).await)
    }

    /// Records what workers report; a report whose claim was taken over changes nothing.
    pub async fn record_outcomes(&self, outcomes: Vec<DeliveryReport>) -> StoreResult<()> {
        on_backend!(self, s => s.record_outcomes(outcomes).await)
    }

    pub async fn apply_status_updates(
        &self,
        updates: Vec<StatusUpdate>,
    ) -> StoreResult<Vec<UpdateResult>> {
        on_backend!(self, s => s.apply_status_updates(updates).await)
    }

    pub async fn authenticate(&self, key_hash: [u8; 32]) -> StoreResult<Option<AuthenticatedKey>> {
        on_backend!(self, s => s.authenticate(key_hash).await)
    }

    pub async fn balance(&self, account_id: &AccountId) -> StoreResult<Balance> {
        on_backend!(self, s => s.balance(account_id).await)
    }

    pub async fn message(
        &self,
        account_id: &AccountId,
        message_id: &MessageId,
    ) -> StoreResult<Option<MessageView>> {
        on_backend!(self, s => s.message(account_id, message_id).await)
    }

    /// Up to `limit` messages of `provider` still `sent` at or before `sent_before`, after
    /// `after` in (last change, id) order: the ones reconciliation looks up.
    pub async fn awaiting_receipt(
        &self,
        provider: &str,
        after: &ReceiptCursor,
        sent_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<AwaitingReceipt>> {
        on_backend!(self, s => s.awaiting_receipt(provider, after, sent_before, limit).await)
    }

    /// Whether a message already carries `provider`'s id `provider_message_id` (an in-doubt
    /// lookup's candidate that is another message's send is not the one looked for).
    pub async fn provider_ref_taken(
        &self,
        provider: &str,
        provider_message_id: &str,
    ) -> StoreResult<bool> {
        on_backend!(self, s => s.provider_ref_taken(provider, provider_message_id).await)
    }

    /// Receipts held because no message carries their provider id (for `/metrics`).
    pub async fn pending_receipts(&self) -> StoreResult<i64> {
        on_backend!(self, s => s.pending_receipts().await)
    }

    /// Drops held receipts older than `max_age` (they report on no send of ours); returns
    /// how many.
    pub async fn purge_pending_receipts(&self, max_age: Duration) -> StoreResult<u64> {
        on_backend!(self, s => s.purge_pending_receipts(max_age).await)
    }

    /// Messages waiting for delivery, per priority (for `/metrics`).
    pub async fn queue_depth(&self) -> StoreResult<Vec<(Priority, i64)>> {
        on_backend!(self, s => s.queue_depth().await)
    }

    pub async fn create_account(&self, account: NewAccount) -> StoreResult<AccountId> {
        on_backend!(self, s => s.create_account(account).await)
    }

    /// Finds an account by `acc_…` id or by name.
    pub async fn find_account(&self, name_or_id: &str) -> StoreResult<AccountId> {
        on_backend!(self, s => s.find_account(name_or_id).await)
    }

    pub async fn account_count(&self) -> StoreResult<i64> {
        on_backend!(self, s => s.account_count().await)
    }

    pub async fn insert_api_key(
        &self,
        account_id: &AccountId,
        key_hash: [u8; 32],
    ) -> StoreResult<ApiKeyId> {
        on_backend!(self, s => s.insert_api_key(account_id, key_hash).await)
    }

    /// Records that this worker process is alive, and extends the leases of the messages it
    /// holds to `lease` from now.
    pub async fn heartbeat(&self, instance_id: &str, lease: Duration) -> StoreResult<()> {
        on_backend!(self, s => s.heartbeat(instance_id, lease).await)
    }

    /// Releases messages claimed by worker processes silent for longer than `stale_after`
    /// (they died mid-delivery), making them due again. Returns how many.
    pub async fn release_orphans(&self, stale_after: Duration) -> StoreResult<u64> {
        let released = on_backend!(self, s => s.release_orphans(stale_after).await)?;
        if released > 0 {
            self.ready.notify_waiters();
        }
        Ok(released)
    }

    /// Deletes idempotency records older than `max_age`.
    pub async fn purge_idempotency_keys(&self, max_age: Duration) -> StoreResult<u64> {
        on_backend!(self, s => s.purge_idempotency_keys(max_age).await)
    }

    pub async fn ping(&self) -> StoreResult<()> {
        on_backend!(self, s => s.ping().await)
    }

    /// Stops the writer after it has committed everything already handed to it.
    pub async fn close(&self) {
        on_backend!(self, s => s.close().await);
    }
}
