//! PostgreSQL: the store and queue shared by many `herald serve --no-workers` and
//! `herald worker` processes on many machines.
//!
//! Unlike SQLite there is no single writer to lean on: operations run on connections from a
//! pool (accepts, outcomes, receipts and inbound messages batched per process), in
//! transactions or, where every statement stands alone, without one (`Writer::autocommit`),
//! and their shape carries what the writer's order carried there: an accept locks its
//! account row before it looks at the idempotency key or the balance; claims skip rows
//! another process holds (`FOR UPDATE SKIP LOCKED`) and fence each claim with `claim_seq`;
//! settlements lock accounts in one order; a transaction that PostgreSQL aborts as a
//! deadlock or serialization failure is run again. The decisions themselves are the shared
//! rules of `store::delivery` and `store::accept`.
//!
//! Provider credentials (`credentials.rs`), message search (`search.rs`, the rules of
//! `store::search`) and the overview (`overview.rs`: its reads, and the fold of the event log
//! into the tallies, which must not miss an event whose number commits out of order) run
//! here as on SQLite, and so do inbound messages, threads and opt-outs (`inbound.rs`, the
//! rules of `store::receive`), and the webhook outbox (`events.rs`, the rules of
//! `store::outbox`). The live event stream reads the log only up to a horizon every event
//! below which is final (`stream.rs`), since identity numbers are not in commit order.
//! Campaigns (`campaign.rs`, reads in `campaign_reads.rs`) run the SQLite plan, their
//! fan-out step holding the campaign row so that workers in many processes expand each
//! recipient once.

mod accept;
mod campaign;
mod campaign_reads;
mod credentials;
mod delivery;
mod events;
mod inbound;
mod overview;
mod search;
mod stream;

use super::{
    AcceptOutcome, AcceptRequest, AuthenticatedKey, AwaitingReceipt, Balance, ClaimedMessage,
    DeliveryReport, MessageView, NewAccount, ReceiptCursor, StatusUpdate, StoreError, StoreResult,
    UpdateResult, WriteHealth, WriteRefusal,
};
use crate::config::DatabaseSettings;
use crate::domain::{AccountId, ApiKeyId, MessageId, Priority, Timestamp};
use crate::store::accept::Batch;
use crate::store::rows::{AwaitingRow, BalanceRow, HistoryRow, MessageRow};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, watch};

/// Both dialects keep the same migration names and versions (checked by a test).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How often a transaction PostgreSQL aborted as a deadlock or serialization failure is
/// tried again before the error reaches the caller.
const RETRIES: u32 = 8;

pub(super) struct PgStore {
    pool: PgPool,
    health: Arc<WriteHealth>,
    /// Outcome batches this process has finished writing (see `Writer::write_updates`).
    outcome_batches: Arc<watch::Sender<u64>>,
    inbox: inbound::Inbox,
    accepts: mpsc::Sender<(AcceptRequest, oneshot::Sender<StoreResult<AcceptOutcome>>)>,
    outcomes: mpsc::Sender<Job<DeliveryReport, ()>>,
    updates: mpsc::Sender<Job<StatusUpdate, Vec<UpdateResult>>>,
    /// How far the event stream may read (see `stream.rs`).
    horizon: stream::SharedHorizon,
}

/// Work handed to a batching task, and where its answer goes.
type Job<T, R> = (Vec<T>, oneshot::Sender<StoreResult<R>>);

/// Reports waiting together are written in one transaction (the group commit of SQLite's
/// writer, per process): a worker reports each message as it finishes, and a transaction
/// per report would hold a pooled connection each, starving the heartbeat that keeps this
/// process's leases.
const BATCH_MAX: usize = 512;

/// Longest a receipt whose message is not known yet waits for this process's outcome writer
/// before it is looked at under the hand-over guard (`Writer::apply_updates`).
const DEFER_AT_MOST: Duration = Duration::from_millis(250);

/// The same error for every caller of a failed batch.
fn shared(e: &StoreError) -> StoreError {
    match e.refusal() {
        // Kept as a refusal, so callers still answer 503 with Retry-After.
        Some(refusal) => StoreError::Refused(refusal),
        None => StoreError::Invalid(format!("the batch this was part of failed: {e}")),
    }
}

impl PgStore {
    pub(super) async fn open(
        settings: &DatabaseSettings,
        health: Arc<WriteHealth>,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(&settings.url)?.statement_cache_capacity(256);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .connect_with(options)
            .await?;
        // sqlx holds an advisory lock while it migrates, so processes starting together
        // migrate once.
        MIGRATOR.run(&pool).await?;
        let (accepts, accept_jobs) = mpsc::channel(BATCH_MAX);
        let (outcomes, outcome_jobs) = mpsc::channel(BATCH_MAX);
        let (updates, update_jobs) = mpsc::channel(BATCH_MAX);
        let store = Self {
            pool,
            health,
            outcome_batches: Arc::new(watch::channel(0).0),
            inbox: inbound::Inbox::default(),
            accepts,
            outcomes,
            updates,
            horizon: stream::SharedHorizon::default(),
        };
        tokio::spawn(store.writer().write_accepts(accept_jobs));
        tokio::spawn(store.writer().write_outcomes(outcome_jobs));
        tokio::spawn(store.writer().write_updates(update_jobs));
        Ok(store)
    }

    fn writer(&self) -> Writer {
        Writer {
            pool: self.pool.clone(),
            health: Arc::clone(&self.health),
            outcome_batches: Arc::clone(&self.outcome_batches),
        }
    }

    /// Runs `op` in a transaction (see [`Writer::write`]).
    async fn write<T: Send>(
        &self,
        op: impl for<'c> FnMut(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send,
    ) -> StoreResult<T> {
        self.writer().write(op).await
    }

    pub(super) async fn accept(&self, request: AcceptRequest) -> StoreResult<AcceptOutcome> {
        let (reply, answer) = oneshot::channel();
        self.accepts
            .send((request, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Claims due messages. The lane probe and the claims run on their own, each statement
    /// its own transaction (a claim statement records its `sending` itself), so the usual
    /// claim is two statements rather than five with BEGIN and COMMIT. Only a claim holding
    /// messages to screen (a campaign's, or to a number that opted out) takes a transaction
    /// for that: the failures and releases it may write move money. Should that transaction
    /// fail, its messages stay leased until the lease runs out and are then taken again in
    /// doubt (the provider is asked first), as after a crash between claim and send.
    pub(super) async fn claim_due(
        &self,
        instance_id: &str,
        limit: usize,
        lease: Duration,
        fair: bool,
    ) -> StoreResult<Vec<ClaimedMessage>> {
        let claimed = async {
            let mut conn = self.pool.acquire().await?;
            Ok(super::delivery::claim_lanes(&mut *conn, instance_id, limit, lease, fair).await?)
        }
        .await;
        let claim = self.writer().noted(claimed)?;
        if claim.is_finished() {
            return Ok(claim.into_messages());
        }
        self.write(|conn| {
            let claim = claim.clone();
            Box::pin(async move { Ok(super::delivery::finish_claim(conn, claim).await?) })
        })
        .await
    }

    pub(super) async fn record_outcomes(&self, outcomes: Vec<DeliveryReport>) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.outcomes
            .send((outcomes, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(super) async fn apply_status_updates(
        &self,
        updates: Vec<StatusUpdate>,
    ) -> StoreResult<Vec<UpdateResult>> {
        let (reply, answer) = oneshot::channel();
        self.updates
            .send((updates, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(super) async fn create_account(&self, account: NewAccount) -> StoreResult<AccountId> {
        let account_id = AccountId::generate();
        let now = Timestamp::now().millis();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(include_str!("queries/insert_account.sql"))
            .bind(account_id.as_str())
            .bind(&account.name)
            .bind(&account.currency)
            .bind(account.balance.units())
            .bind(account.daily_limit)
            .bind(now)
            .bind(crate::events::new_secret())
            .execute(&mut *tx)
            .await;
        match inserted {
            // The name is unique: another process (or an earlier run) has it.
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StoreError::AccountExists(account.name));
            }
            other => {
                other?;
            }
        }
        if account.balance.units() != 0 {
            sqlx::query(include_str!("queries/record_credit.sql"))
                .bind(account_id.as_str())
                .bind(account.balance.units())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(account_id)
    }

    pub(super) async fn insert_api_key(
        &self,
        account_id: &AccountId,
        key_hash: [u8; 32],
    ) -> StoreResult<ApiKeyId> {
        let api_key_id = ApiKeyId::generate();
        sqlx::query(include_str!("queries/insert_api_key.sql"))
            .bind(api_key_id.as_str())
            .bind(account_id.as_str())
            .bind(&key_hash[..])
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await?;
        Ok(api_key_id)
    }

    pub(super) async fn heartbeat(&self, instance_id: &str, lease: Duration) -> StoreResult<()> {
        let now = Timestamp::now();
        self.write(|conn| {
            let instance_id = instance_id.to_owned();
            Box::pin(async move {
                sqlx::query(include_str!("queries/record_heartbeat.sql"))
                    .bind(&instance_id)
                    .bind(now.millis())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(include_str!("queries/renew_leases.sql"))
                    .bind(&instance_id)
                    .bind(now.plus(lease).millis())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn release_orphans(&self, stale_after: Duration) -> StoreResult<u64> {
        let now = Timestamp::now();
        let cutoff = now.minus(stale_after).millis();
        self.write(|conn| {
            Box::pin(async move {
                let released = sqlx::query(include_str!("queries/release_orphans.sql"))
                    .bind(cutoff)
                    .bind(now.millis())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                sqlx::query(include_str!("queries/forget_dead_workers.sql"))
                    .bind(cutoff)
                    .execute(&mut *conn)
                    .await?;
                Ok(released)
            })
        })
        .await
    }

    pub(super) async fn purge_idempotency_keys(&self, max_age: Duration) -> StoreResult<u64> {
        let cutoff = Timestamp::now().minus(max_age).millis();
        Ok(
            sqlx::query(include_str!("queries/purge_idempotency_keys.sql"))
                .bind(cutoff)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub(super) async fn purge_pending_receipts(&self, max_age: Duration) -> StoreResult<u64> {
        let cutoff = Timestamp::now().minus(max_age).millis();
        Ok(
            sqlx::query(include_str!("queries/purge_pending_receipts.sql"))
                .bind(cutoff)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub(super) async fn authenticate(
        &self,
        key_hash: [u8; 32],
    ) -> StoreResult<Option<AuthenticatedKey>> {
        let row = sqlx::query(include_str!("queries/authenticate.sql"))
            .bind(&key_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: Vec<u8> = row.try_get("key_hash")?;
        // As on SQLite: the final decision is a constant-time comparison.
        if !bool::from(stored.as_slice().ct_eq(&key_hash[..])) {
            return Ok(None);
        }
        Ok(Some(AuthenticatedKey {
            api_key_id: ApiKeyId::from_stored(row.try_get("api_key_id")?),
            account_id: AccountId::from_stored(row.try_get("account_id")?),
        }))
    }

    pub(super) async fn balance(&self, account_id: &AccountId) -> StoreResult<Balance> {
        let row: BalanceRow = sqlx::query_as(include_str!("queries/load_balance.sql"))
            .bind(account_id.as_str())
            .bind(Timestamp::now().day())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NoSuchAccount(account_id.to_string()))?;
        Ok(row.into())
    }

    pub(super) async fn message(
        &self,
        account_id: &AccountId,
        message_id: &MessageId,
    ) -> StoreResult<Option<MessageView>> {
        // One snapshot for status and history (REPEATABLE READ: both statements see the
        // same committed state).
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
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

    pub(super) async fn awaiting_receipt(
        &self,
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
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(AwaitingReceipt::from).collect())
    }

    pub(super) async fn provider_ref_taken(
        &self,
        provider: &str,
        provider_message_id: &str,
    ) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar(include_str!("queries/provider_ref_taken.sql"))
                .bind(provider)
                .bind(provider_message_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(super) async fn pending_receipts(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar(include_str!("queries/count_pending_receipts.sql"))
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(super) async fn queue_depth(&self) -> StoreResult<Vec<(Priority, i64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(include_str!("queries/queue_depth.sql"))
            .fetch_all(&self.pool)
            .await?;
        Ok(Priority::DESCENDING
            .iter()
            .map(|p| {
                let waiting = rows
                    .iter()
                    .find(|(rank, _)| *rank == p.rank())
                    .map_or(0, |(_, n)| *n);
                (*p, waiting)
            })
            .collect())
    }

    pub(super) async fn find_account(&self, name_or_id: &str) -> StoreResult<AccountId> {
        let id: String = sqlx::query_scalar(include_str!("queries/find_account_by_name.sql"))
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NoSuchAccount(name_or_id.to_owned()))?;
        Ok(AccountId::from_stored(id))
    }

    pub(super) async fn account_count(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar(include_str!("queries/count_accounts.sql"))
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs transactions on the pool, and records refusals for `/readyz`.
#[derive(Clone)]
struct Writer {
    pool: PgPool,
    health: Arc<WriteHealth>,
    outcome_batches: Arc<watch::Sender<u64>>,
}

impl Writer {
    /// Runs `op` in a transaction and commits it, again from the start while PostgreSQL
    /// aborts it for contention with another transaction.
    async fn write<T: Send>(
        &self,
        op: impl for<'c> FnMut(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send,
    ) -> StoreResult<T> {
        self.run(true, op).await
    }

    /// Runs `op` on a connection of its own with no transaction around it, each statement
    /// committed as it ends: for work whose every statement stands alone (each is all or
    /// nothing, and `op` may run again after a failure). Saves BEGIN and COMMIT, two of the
    /// statements that decide how far one primary scales.
    async fn autocommit<T: Send>(
        &self,
        op: impl for<'c> FnMut(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send,
    ) -> StoreResult<T> {
        self.run(false, op).await
    }

    async fn run<T: Send>(
        &self,
        in_transaction: bool,
        mut op: impl for<'c> FnMut(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send,
    ) -> StoreResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                if in_transaction {
                    let mut tx = self.pool.begin().await?;
                    let value = op(&mut tx).await?;
                    tx.commit().await?;
                    Ok(value)
                } else {
                    let mut conn = self.pool.acquire().await?;
                    op(&mut conn).await
                }
            }
            .await;
            match result {
                Err(e) if attempt < RETRIES && retryable(&e) => {
                    tracing::debug!(error = %e, attempt, "statement contended; running it again");
                }
                other => return self.noted(other),
            }
        }
    }

    /// Records a refusal of writes (full disk, read-only) for `/readyz`, as SQLite's writer does.
    fn noted<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        match &result {
            Ok(_) => self.health.committed(),
            Err(StoreError::Database(e)) => {
                if let Some(refusal) = WriteRefusal::of(e) {
                    self.health.refused(refusal, e);
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Accepts the requests waiting together in one transaction, their accounts locked first,
    /// until the store closes. Not retried: each request (and its renderer) is consumed, and
    /// nothing is needed: accounts are locked in one order, and an accept waits on no
    /// message row, so accepts deadlock neither with each other nor with deliveries.
    async fn write_accepts(
        self,
        mut jobs: mpsc::Receiver<(AcceptRequest, oneshot::Sender<StoreResult<AcceptOutcome>>)>,
    ) {
        let mut waiting = Vec::with_capacity(BATCH_MAX);
        while jobs.recv_many(&mut waiting, BATCH_MAX).await > 0 {
            let (requests, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
            let result = self.noted(self.accept_together(requests).await);
            match result {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(shared(&e)));
                    }
                }
            }
        }
    }

    /// One transaction for `requests`; per request its outcome (an unknown account fails
    /// only its own request), or the transaction's error.
    async fn accept_together(
        &self,
        requests: Vec<AcceptRequest>,
    ) -> StoreResult<Vec<StoreResult<AcceptOutcome>>> {
        let accounts: BTreeSet<&AccountId> = requests.iter().map(|r| &r.account_id).collect();
        let mut tx = self.pool.begin().await?;
        let mut batch = Batch::default();
        match accounts.first() {
            // The usual batch: one account, whose figures lock its row.
            Some(account) if accounts.len() == 1 => batch.load_first(&mut *tx, account).await?,
            _ => {
                let accounts: Vec<&str> = accounts.iter().map(|a| a.as_str()).collect();
                sqlx::query(include_str!("queries/lock_account.sql"))
                    .bind(super::delivery::json_array(&accounts))
                    .fetch_all(&mut *tx)
                    .await?;
            }
        }
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            match batch.add(&mut *tx, request).await {
                // A failed statement aborts the whole transaction.
                Err(StoreError::Database(e)) => return Err(StoreError::Database(e)),
                outcome => outcomes.push(outcome),
            }
        }
        batch.flush(&mut *tx).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Writes the outcomes waiting together ([`Writer::record`]), until the store closes.
    async fn write_outcomes(self, mut jobs: mpsc::Receiver<Job<DeliveryReport, ()>>) {
        let mut waiting = Vec::with_capacity(BATCH_MAX);
        while jobs.recv_many(&mut waiting, BATCH_MAX).await > 0 {
            let (reports, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
            let reports: Vec<DeliveryReport> = reports.into_iter().flatten().collect();
            let result = self.record(reports).await;
            self.outcome_batches.send_modify(|n| *n = n.wrapping_add(1));
            for reply in replies {
                let _ = reply.send(result.as_ref().map(|_| ()).map_err(shared));
            }
        }
    }

    /// One batch of outcomes, in as few statements as each part allows. The sends are one
    /// statement that settles them too (mark_sent.sql), with no transaction around it; the
    /// receipts held for them are looked for in a second, and taken and applied in a
    /// transaction only when there are some. Anything else (retries, failures, holds,
    /// releases, which are few, and failures move money) takes a transaction.
    async fn record(&self, reports: Vec<DeliveryReport>) -> StoreResult<()> {
        let (sends, rest) = super::delivery::split_sends(reports);
        if !rest.is_empty() {
            self.write(|conn| {
                let rest = rest.clone();
                Box::pin(async move { Ok(super::delivery::record_outcomes(conn, rest).await?) })
            })
            .await?;
        }
        if sends.is_empty() {
            return Ok(());
        }
        // Two statements on one connection; run again after a failure, the first moves
        // nothing it moved before.
        let waiting: bool = self
            .autocommit(|conn| {
                let sends = sends.clone();
                Box::pin(async move {
                    super::delivery::record_sends(conn, &sends).await?;
                    let (providers, references) = sends.refs_json();
                    Ok(
                        sqlx::query_scalar(include_str!("queries/held_receipts_waiting.sql"))
                            .bind(providers)
                            .bind(references)
                            .fetch_one(conn)
                            .await?,
                    )
                })
            })
            .await?;
        if waiting {
            self.write(|conn| {
                let sends = sends.clone();
                Box::pin(
                    async move { Ok(super::delivery::apply_held_receipts(conn, &sends).await?) },
                )
            })
            .await?;
        }
        Ok(())
    }

    /// Applies the receipts waiting together; each caller gets the results of its own.
    async fn write_updates(self, mut jobs: mpsc::Receiver<Job<StatusUpdate, Vec<UpdateResult>>>) {
        let mut waiting = Vec::with_capacity(BATCH_MAX);
        while jobs.recv_many(&mut waiting, BATCH_MAX).await > 0 {
            let mut updates = Vec::new();
            let mut replies = Vec::with_capacity(waiting.len());
            for (batch, reply) in waiting.drain(..) {
                replies.push((batch.len(), reply));
                updates.extend(batch);
            }
            match self.apply_updates(updates).await {
                Ok(mut results) => {
                    for (len, reply) in replies {
                        let rest = results.split_off(len.min(results.len()));
                        let _ = reply.send(Ok(results));
                        results = rest;
                    }
                }
                Err(e) => {
                    for (_, reply) in replies {
                        let _ = reply.send(Err(shared(&e)));
                    }
                }
            }
        }
    }

    /// Receipts in two passes. The first applies what it can without the hand-over guard,
    /// which excludes every process's recording of sends while it is held, and with no
    /// transaction around its statements: each applies a group of receipts whole, and run
    /// again a receipt applied already is only stale. Most receipts it cannot apply are this
    /// process's own: the mock (or a fast carrier) answers before the outcome writer has
    /// committed the send. So the second pass, a transaction which takes the guard for what
    /// is still unknown, waits for two more outcome batches first (at most
    /// `DEFER_AT_MOST`); by then those sends are recorded and the guard's queue stays
    /// short. Seen before this: with three worker processes sending a campaign, 272 of 420
    /// samples of the active backends waited on the guard. The receipts of one batch finish
    /// before the next batch starts, so a later status never overtakes them.
    async fn apply_updates(&self, updates: Vec<StatusUpdate>) -> StoreResult<Vec<UpdateResult>> {
        let mut sent = self.outcome_batches.subscribe();
        let (mut results, waiting) = self
            .autocommit(|conn| {
                let updates = updates.clone();
                Box::pin(
                    async move { Ok(super::delivery::apply_known_receipts(conn, &updates).await?) },
                )
            })
            .await?;
        if waiting.is_empty() {
            return Ok(results);
        }
        let _ = tokio::time::timeout(DEFER_AT_MOST, async {
            for _ in 0..2 {
                if sent.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        let later: Vec<StatusUpdate> = waiting
            .iter()
            .filter_map(|i| updates.get(*i).cloned())
            .collect();
        let applied = self
            .write(|conn| {
                let later = later.clone();
                Box::pin(
                    async move { Ok(super::delivery::apply_status_updates(conn, later).await?) },
                )
            })
            .await?;
        for (i, result) in waiting.into_iter().zip(applied) {
            if let Some(slot) = results.get_mut(i) {
                *slot = result;
            }
        }
        Ok(results)
    }
}

/// Whether PostgreSQL aborted the transaction only because of another one (SQLSTATE class
/// 40: serialization failure, deadlock), so running it again is the whole remedy.
fn retryable(e: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = e else {
        return false;
    };
    db.code().is_some_and(|code| code.starts_with("40"))
}
