//! SQLite: one write connection owned by the writer task (`writer.rs`), a pool of read
//! connections beside it (WAL lets readers run while the writer commits).

mod accept;
mod admin;
pub(super) mod campaign;
pub(super) mod campaign_reads;
pub(super) mod credentials;
mod delivery;
pub(super) mod events;
pub(super) mod inbound;
pub(super) mod overview;
mod pieces;
mod reads;
pub(super) mod search;
mod writer;

use super::{
    AcceptOutcome, AcceptRequest, AuthenticatedKey, Balance, ClaimedMessage, DeliveryReport,
    MessageView, NewAccount, StatusUpdate, StoreError, StoreResult, UpdateResult, WriteHealth,
};
use crate::config::{DatabaseSettings, Synchronous};
use crate::domain::{AccountId, ApiKeyId, MessageId, Priority};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use writer::{Maintenance, Op};

/// Both dialects keep the same migration names and versions (checked by a test).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    read: SqlitePool,
    writer: mpsc::Sender<Op>,
    writer_task: Mutex<Option<JoinHandle<()>>>,
    checkpointer: JoinHandle<()>,
}

/// Page cache of each read connection, in KiB (SQLite's `cache_size` takes KiB as a negative
/// number). SQLite's default of 2 MiB on each of eight readers filled over the first
/// minutes of a soak and was half of its memory growth, for little: the readers' pages come
/// from the operating system's file cache at a system call each, and a read touches a few
/// index pages.
const READ_CACHE_KIB: &str = "-256";

/// Page cache of the write connection, in KiB: the hot tail of every table and index.
/// SQLite's default of 2 MiB filled over the whole of a 30-minute soak (heaptrack: 1.9 MB of
/// the 9.3 MB that stayed allocated after the first minute).
const WRITE_CACHE_KIB: &str = "-1024";

/// How often the background checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL pages after which the writer checkpoints itself: only a backstop (the background
/// checkpointer normally keeps the WAL far below it).
const WRITER_AUTOCHECKPOINT_PAGES: &str = "10000";

/// Copies the WAL into the database in the background (PASSIVE: never blocks the writer, and
/// gives up on pages readers still need). Left to the writer, SQLite checkpoints inside the
/// commit that crosses 1,000 pages, and every request in that group commit waits for the
/// copy and its fsync.
async fn checkpoint_forever(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query(include_str!("queries/checkpoint.sql"))
            .execute(&pool)
            .await
        {
            // The writer's own autocheckpoint is the backstop; try again next tick.
            tracing::debug!(error = %e, "background checkpoint failed");
        }
    }
}

impl SqliteStore {
    pub(super) async fn open(
        settings: &DatabaseSettings,
        health: Arc<WriteHealth>,
    ) -> StoreResult<Self> {
        let options = connect_options(settings)?;
        // The writer's reconnects keep the backstop too, so they take the same options.
        let writer_options = options
            .clone()
            .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .pragma("cache_size", WRITE_CACHE_KIB)
            // A statement that may have to undo its own part of a transaction journals the
            // pages it changes again. By default that journal spills to a temporary file past
            // 64 KiB, and the writer's multi-row statements always did: 12 % of its thread in
            // a profile at 9,000 msg/s offered, and a fifth of what the server wrote to disk
            // (BENCHMARKS.md, "Statement journals in memory"). Freed as each statement ends.
            .pragma("temp_store", "memory");
        let mut write_conn = writer_options.connect().await?;
        MIGRATOR.run(&mut write_conn).await?;
        // All readers open at start and stay open: opened on demand (and closed after ten
        // idle minutes), each reader that a burst added later brought its own thread,
        // schema and cache, and memory grew for the whole first part of a soak.
        let read = SqlitePoolOptions::new()
            .max_connections(settings.sqlite_readers)
            .min_connections(settings.sqlite_readers)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone().pragma("cache_size", READ_CACHE_KIB))
            .await?;
        let (tx, rx) = mpsc::channel(settings.commit_batch_max.saturating_mul(4));
        let task = tokio::spawn(writer::run(
            writer::Connection {
                conn: write_conn,
                options: writer_options,
                health,
            },
            rx,
            settings.commit_batch_max,
        ));
        let checkpointer = tokio::spawn(checkpoint_forever(read.clone()));
        Ok(Self {
            read,
            writer: tx,
            writer_task: Mutex::new(Some(task)),
            checkpointer,
        })
    }

    async fn call<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Op,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(op(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(super) async fn accept(&self, request: AcceptRequest) -> StoreResult<AcceptOutcome> {
        self.call(|reply| Op::Accept(request, reply)).await
    }

    pub(super) async fn claim_due(
        &self,
        instance_id: &str,
        limit: usize,
        lease: Duration,
        fair: bool,
    ) -> StoreResult<Vec<ClaimedMessage>> {
        let instance_id = instance_id.to_owned();
        self.call(|reply| Op::Claim {
            instance_id,
            limit,
            lease,
            fair,
            reply,
        })
        .await
    }

    pub(super) async fn record_outcomes(&self, outcomes: Vec<DeliveryReport>) -> StoreResult<()> {
        self.call(|reply| Op::Outcomes(outcomes, reply)).await
    }

    pub(super) async fn apply_status_updates(
        &self,
        updates: Vec<StatusUpdate>,
    ) -> StoreResult<Vec<UpdateResult>> {
        self.call(|reply| Op::StatusUpdates(updates, reply)).await
    }

    pub(super) async fn create_account(&self, account: NewAccount) -> StoreResult<AccountId> {
        let account_id = AccountId::generate();
        let id = account_id.clone();
        self.call(|reply| Op::Maintenance(Maintenance::CreateAccount(account, id), reply))
            .await?;
        Ok(account_id)
    }

    pub(super) async fn insert_api_key(
        &self,
        account_id: &AccountId,
        key_hash: [u8; 32],
    ) -> StoreResult<ApiKeyId> {
        let api_key_id = ApiKeyId::generate();
        let maintenance = Maintenance::InsertApiKey {
            api_key_id: api_key_id.clone(),
            account_id: account_id.clone(),
            key_hash,
        };
        self.call(|reply| Op::Maintenance(maintenance, reply))
            .await?;
        Ok(api_key_id)
    }

    pub(super) async fn heartbeat(&self, instance_id: &str, lease: Duration) -> StoreResult<()> {
        let maintenance = Maintenance::Heartbeat {
            instance_id: instance_id.to_owned(),
            lease,
        };
        self.call(|reply| Op::Maintenance(maintenance, reply))
            .await?;
        Ok(())
    }

    pub(super) async fn release_orphans(&self, stale_after: Duration) -> StoreResult<u64> {
        self.call(|reply| Op::Maintenance(Maintenance::ReleaseOrphans(stale_after), reply))
            .await
    }

    pub(super) async fn purge_idempotency_keys(&self, max_age: Duration) -> StoreResult<u64> {
        self.call(|reply| Op::Maintenance(Maintenance::PurgeIdempotency(max_age), reply))
            .await
    }

    pub(super) async fn purge_tallies(
        &self,
        minutes_before: i64,
        hours_before: i64,
    ) -> StoreResult<u64> {
        let maintenance = Maintenance::PurgeTallies(minutes_before, hours_before);
        self.call(|reply| Op::Maintenance(maintenance, reply)).await
    }

    /// Counts the next `limit` events on a read connection (the aggregate never holds the
    /// writer), then has the writer add the sums and move the cursor. Returns how many
    /// events were folded.
    pub(super) async fn fold_tallies(&self, limit: i64) -> StoreResult<u64> {
        let from: i64 = sqlx::query_scalar(include_str!("queries/tally_cursor.sql"))
            .fetch_one(&self.read)
            .await?;
        let (upto, events): (Option<i64>, i64) =
            sqlx::query_as(include_str!("queries/events_to_fold.sql"))
                .bind(from)
                .bind(limit)
                .fetch_one(&self.read)
                .await?;
        let Some(to) = upto else { return Ok(0) };
        let rows: Vec<(String, i64, String, i64)> =
            sqlx::query_as(include_str!("queries/count_events_to_fold.sql"))
                .bind(from)
                .bind(to)
                .fetch_all(&self.read)
                .await?;
        let counts = serde_json::to_string(&rows)
            .map_err(|e| StoreError::Invalid(format!("tallies could not be encoded: {e}")))?;
        let fold = Maintenance::FoldTallies { from, to, counts };
        let moved = self.call(|reply| Op::Maintenance(fold, reply)).await?;
        Ok(if moved == 1 {
            u64::try_from(events).unwrap_or(0)
        } else {
            0
        })
    }

    pub(super) async fn authenticate(
        &self,
        key_hash: [u8; 32],
    ) -> StoreResult<Option<AuthenticatedKey>> {
        reads::authenticate(&self.read, key_hash).await
    }

    pub(super) async fn balance(&self, account_id: &AccountId) -> StoreResult<Balance> {
        reads::balance(&self.read, account_id).await
    }

    pub(super) async fn message(
        &self,
        account_id: &AccountId,
        message_id: &MessageId,
    ) -> StoreResult<Option<MessageView>> {
        reads::message(&self.read, account_id, message_id).await
    }

    pub(super) async fn awaiting_receipt(
        &self,
        provider: &str,
        after: &super::ReceiptCursor,
        sent_before: crate::domain::Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<super::AwaitingReceipt>> {
        reads::awaiting_receipt(&self.read, provider, after, sent_before, limit).await
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
                .fetch_one(&self.read)
                .await?,
        )
    }

    pub(super) async fn pending_receipts(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar(include_str!("queries/count_pending_receipts.sql"))
                .fetch_one(&self.read)
                .await?,
        )
    }

    pub(super) async fn purge_pending_receipts(&self, max_age: Duration) -> StoreResult<u64> {
        self.call(|reply| Op::Maintenance(Maintenance::PurgePendingReceipts(max_age), reply))
            .await
    }

    pub(super) async fn queue_depth(&self) -> StoreResult<Vec<(Priority, i64)>> {
        reads::queue_depth(&self.read).await
    }

    pub(super) async fn find_account(&self, name_or_id: &str) -> StoreResult<AccountId> {
        reads::find_account(&self.read, name_or_id).await
    }

    pub(super) async fn account_count(&self) -> StoreResult<i64> {
        reads::account_count(&self.read).await
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.read.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    pub(super) async fn record_inbound(
        &self,
        batch: Vec<crate::store::inbound::NewInbound>,
    ) -> StoreResult<Vec<crate::store::inbound::InboundOutcome>> {
        self.call(|reply| Op::Inbound(batch, reply)).await
    }

    pub(super) async fn mark_read(
        &self,
        account_id: AccountId,
        ids: Vec<String>,
    ) -> StoreResult<u64> {
        self.call(|reply| Op::MarkRead(account_id, ids, reply))
            .await
    }

    pub(super) async fn events_write(
        &self,
        write: crate::store::outbox::EventWrite,
    ) -> StoreResult<crate::store::outbox::EventWritten> {
        self.call(|reply| Op::Events(write, reply)).await
    }

    pub(super) async fn campaign_write(&self, write: campaign::CampaignWrite) -> StoreResult<u64> {
        self.call(|reply| Op::Campaign(write, reply)).await
    }

    pub(super) async fn finish_campaign(
        &self,
        finish: crate::store::FinishCampaign,
    ) -> StoreResult<AcceptOutcome> {
        self.call(|reply| Op::FinishCampaign(finish, reply)).await
    }

    pub(super) async fn fan_out(
        &self,
        request: crate::store::FanOutRequest,
    ) -> StoreResult<crate::store::FanOutResult> {
        self.call(|reply| Op::FanOut(request, reply)).await
    }

    /// The read pool, for the read functions of `campaign_reads`.
    pub(super) fn reads(&self) -> &SqlitePool {
        &self.read
    }

    pub(super) async fn close(&self) {
        // Ops already queued come before this one, so they are committed first.
        let _ = self.writer.send(Op::Shutdown).await;
        if let Some(task) = self.writer_task.lock().await.take() {
            let _ = task.await;
        }
        self.checkpointer.abort();
        self.read.close().await;
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

fn connect_options(settings: &DatabaseSettings) -> StoreResult<SqliteConnectOptions> {
    let path = settings
        .url
        .strip_prefix("sqlite://")
        .or_else(|| settings.url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "database.url `{}` is not a sqlite:// URL (the only store so far)",
                settings.url
            ))
        })?;
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Invalid(format!(
                "cannot create the folder {}: {e}",
                parent.display()
            ))
        })?;
    }
    let synchronous = match settings.synchronous {
        Synchronous::Normal => SqliteSynchronous::Normal,
        Synchronous::Full => SqliteSynchronous::Full,
    };
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        // Other processes (`herald accounts create`, `herald worker`) may hold the write
        // lock for a moment; wait for it rather than fail.
        .busy_timeout(Duration::from_millis(settings.busy_timeout_ms))
        .statement_cache_capacity(256)
        // Rows come back from SQLite's thread through a bounded channel; at the default 50 a
        // batch's RETURNING rows (up to thousands of receipts) bounce between that thread and
        // the writer task every 50 rows, each bounce two context switches.
        .row_buffer_size(4096);
    // Per connection and not stored in the file, so it is set on every connection (only
    // the writer's ever grows the file).
    Ok(match settings.max_page_count {
        0 => options,
        pages => options.pragma("max_page_count", pages.to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::delivery::{DeliverySql, status_events};
    use sqlx::Executor;
    use sqlx::sqlite::SqliteConnection;

    /// A connection to a fresh, migrated database in `dir`.
    async fn migrated(dir: &tempfile::TempDir) -> SqliteConnection {
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let mut conn = options.connect().await.unwrap();
        MIGRATOR.run(&mut conn).await.unwrap();
        conn
    }

    /// The compile-time check sqlx's macros would give, done at test time instead: every
    /// query file must prepare against a freshly migrated database.
    #[tokio::test]
    async fn every_query_file_prepares_against_the_migrated_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(&dir).await;

        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/sqlite/queries");
        let mut checked = 0;
        let mut failures = Vec::new();
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let sql = std::fs::read_to_string(&path).unwrap();
            assert!(
                sql.starts_with("-- "),
                "{} must open with a comment saying what it does",
                path.display()
            );
            // SQLite plans `LIMIT ?n` for the bound value and marks the statement expired
            // whenever ?n is bound again: every run parsed and planned it anew (4 % of the
            // writer's thread in a profile at 4,000 msg/s, mostly the claims). `+?n` is
            // evaluated when the statement runs, so the prepared statement is kept.
            if sql.contains("LIMIT ?") {
                failures.push(format!("{}: LIMIT ?n instead of LIMIT +?n", path.display()));
            }
            if let Err(e) = (&mut conn)
                .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)))
                .await
            {
                failures.push(format!("{}: {e}", path.display()));
            }
            checked += 1;
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(checked >= 20, "only {checked} query files found");
    }

    /// The hot queries must be driven by an index: a full scan of `message` is invisible
    /// on a test database and costs a second per batch with a few hundred thousand rows.
    #[tokio::test]
    async fn hot_queries_never_scan_the_message_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(&dir).await;
        let hot = [
            include_str!("queries/claim_lane.sql"),
            include_str!("queries/due_lanes.sql"),
            include_str!("queries/mark_sent.sql"),
            include_str!("queries/apply_status_update.sql"),
            include_str!("queries/schedule_retry.sql"),
            include_str!("queries/mark_unsent.sql"),
            include_str!("queries/release_claim.sql"),
            include_str!("queries/renew_leases.sql"),
            include_str!("queries/release_orphans.sql"),
            include_str!("queries/load_message.sql"),
            include_str!("queries/find_by_provider_refs.sql"),
            include_str!("queries/provider_ref_taken.sql"),
            include_str!("queries/queue_depth.sql"),
            include_str!("queries/claimed_opted_out.sql"),
            include_str!("queries/campaign_states.sql"),
            include_str!("queries/park_claim.sql"),
            include_str!("queries/hold_claim.sql"),
            include_str!("queries/park_campaign_messages.sql"),
            include_str!("queries/unpark_campaign_messages.sql"),
            include_str!("queries/cancel_campaign_messages.sql"),
            include_str!("queries/complete_campaign.sql"),
            include_str!("queries/campaign_counts.sql"),
            include_str!("queries/campaign_waiting.sql"),
            include_str!("queries/campaign_held.sql"),
            include_str!("queries/fanout_window.sql"),
            include_str!("queries/fanout_insert.sql"),
            include_str!("queries/fanout_skip_opted_out.sql"),
            include_str!("queries/insert_status_events_for_block.sql"),
            include_str!("queries/insert_message_events_for_block.sql"),
            include_str!("queries/insert_message_events.sql"),
            include_str!("queries/last_outbound.sql"),
            include_str!("queries/attach_threads.sql"),
            include_str!("queries/list_threads.sql"),
            include_str!("queries/load_thread.sql"),
            include_str!("queries/thread_messages.sql"),
        ];
        for sql in hot {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let scans: Vec<&String> = plan
                .iter()
                .map(|(_, _, _, detail)| detail)
                // Walking the partial index `message_ready` is walking the backlog: fine.
                // Searching by provider alone visits every message that provider sent.
                .filter(|d| {
                    let full_scan = (d.starts_with("SCAN message") || d.starts_with("SCAN m "))
                        && !d.contains("INDEX message_ready");
                    let by_provider_only = d.contains("message_provider_ref (provider=?)");
                    full_scan || by_provider_only
                })
                .collect();
            assert!(scans.is_empty(), "{sql}\nscans: {scans:?}");
        }
    }

    /// A migrated database holding the account `acc_1`, for tests that insert messages.
    async fn migrated_with_account(dir: &tempfile::TempDir) -> SqliteConnection {
        let mut conn = migrated(dir).await;
        sqlx::query(
            "INSERT INTO account (account_id, name, currency, balance, daily_limit, created_at, \
             updated_at) VALUES ('acc_1', 'a', 'USD', 0, 10, 0, 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    }

    /// Parking a claim of a paused campaign undoes only this claim: a message that was
    /// already `sending` before (re-claimed after its lease ran out) stays `sending`; the
    /// status never moves back.
    #[tokio::test]
    async fn parking_a_reclaimed_message_never_moves_its_status_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated_with_account(&dir).await;
        for id in ["msg_again", "msg_first"] {
            sqlx::query(
                "INSERT INTO message (message_id, account_id, channel, phone_number, body, \
                 priority, status, segments, cost, billing, due_at, expires_at, created_at, \
                 updated_at) VALUES (?, 'acc_1', 'sms', '+14155550123', 'hi', 1, 'sending', 1, \
                 0, 'reserved', 0, 9999999999999, 0, 0)",
            )
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        // msg_again was sending before this claim; msg_first became sending with it.
        sqlx::query("INSERT INTO message_status_event VALUES ('msg_again', 'sending', 1)")
            .execute(&mut conn)
            .await
            .unwrap();
        for id in ["msg_again", "msg_first"] {
            sqlx::query(include_str!("queries/park_claim.sql"))
                .bind(id)
                .bind(crate::store::HELD)
                .bind(2_i64)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT message_id, status, due_at FROM message ORDER BY message_id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "msg_again".to_owned(),
                    "sending".to_owned(),
                    crate::store::HELD
                ),
                (
                    "msg_first".to_owned(),
                    "queued".to_owned(),
                    crate::store::HELD
                ),
            ]
        );
    }

    /// A claim whose worker died (released as an orphan, or its lease taken over) leaves the
    /// message in doubt since that claim; claims given back for ordinary reasons (shutdown,
    /// a retry after a refusal) do not, and a retry after a failed lookup keeps the mark.
    #[tokio::test]
    async fn only_a_claim_whose_worker_died_leaves_its_message_in_doubt() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated_with_account(&dir).await;
        for id in [
            "msg_a_drained",
            "msg_b_retried",
            "msg_c_orphaned",
            "msg_d_lapsed",
        ] {
            sqlx::query(
                "INSERT INTO message (message_id, account_id, channel, phone_number, body, \
                 priority, status, segments, cost, billing, due_at, expires_at, created_at, \
                 updated_at) VALUES (?, 'acc_1', 'sms', '+14155550123', 'hi', 1, 'queued', 1, \
                 0, 'reserved', 0, 9999999999999, 0, 0)",
            )
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        // Claims up to `limit` at `now`: (message id, claim_seq, in_doubt_since) of each.
        async fn claim(
            conn: &mut SqliteConnection,
            lease_until: i64,
            worker: &str,
            now: i64,
            limit: i64,
        ) -> Vec<(String, i64, Option<i64>)> {
            use sqlx::Row;
            sqlx::query(include_str!("queries/claim_lane.sql"))
                .bind(lease_until)
                .bind(worker)
                .bind(now)
                .bind(1_i64)
                .bind(limit)
                .fetch_all(conn)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get("message_id"),
                        r.get("claim_seq"),
                        r.get("in_doubt_since"),
                    )
                })
                .collect()
        }
        // The doomed worker claims three at t=100; a live one claims the fourth with a
        // lease that runs out at t=150.
        let first = claim(&mut conn, 1_000, "worker-dead", 100, 3).await;
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|(_, _, doubt)| doubt.is_none()));
        let lapsed = claim(&mut conn, 150, "worker-slow", 100, 1).await;
        assert_eq!(lapsed.len(), 1);
        let seq = |id: &str| {
            first
                .iter()
                .find(|(m, _, _)| m == id)
                .map(|(_, s, _)| *s)
                .unwrap()
        };
        sqlx::query(include_str!("queries/release_claim.sql"))
            .bind("msg_a_drained")
            .bind(110_i64)
            .bind(seq("msg_a_drained"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(include_str!("queries/schedule_retry.sql"))
            .bind("msg_b_retried")
            .bind(120_i64)
            .bind("http_503")
            .bind("refused")
            .bind(110_i64)
            .bind(seq("msg_b_retried"))
            .bind(None::<&str>)
            .bind(None::<i64>)
            .execute(&mut conn)
            .await
            .unwrap();

        // Act: the sweeper finds worker-dead silent (worker-slow still beats, but its lease
        // ran out); then another worker takes over the lapsed lease (t=200).
        sqlx::query(
            "INSERT INTO worker_instance (instance_id, started_at, heartbeat_at) \
             VALUES ('worker-slow', 0, 195)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(include_str!("queries/release_orphans.sql"))
            .bind(190_i64)
            .bind(190_i64)
            .execute(&mut conn)
            .await
            .unwrap();
        let retaken = claim(&mut conn, 5_000, "worker-new", 200, 4).await;

        // Assert
        let mut marks: Vec<(String, Option<i64>)> = retaken
            .into_iter()
            .map(|(id, _, doubt)| (id, doubt))
            .collect();
        marks.sort();
        assert_eq!(
            marks,
            [
                ("msg_a_drained".to_owned(), None),
                ("msg_b_retried".to_owned(), None),
                ("msg_c_orphaned".to_owned(), Some(100)),
                ("msg_d_lapsed".to_owned(), Some(100)),
            ]
        );
        // A retry after a failed lookup keeps the mark; a recorded send clears it.
        let seq_of = |id: &'static str| {
            sqlx::query_scalar::<_, i64>("SELECT claim_seq FROM message WHERE message_id = ?")
                .bind(id)
        };
        let c = seq_of("msg_c_orphaned").fetch_one(&mut conn).await.unwrap();
        sqlx::query(include_str!("queries/schedule_retry.sql"))
            .bind("msg_c_orphaned")
            .bind(300_i64)
            .bind("http_503")
            .bind("could not ask")
            .bind(210_i64)
            .bind(c)
            .bind(None::<&str>)
            .bind(Some(100_i64))
            .execute(&mut conn)
            .await
            .unwrap();
        let d = seq_of("msg_d_lapsed").fetch_one(&mut conn).await.unwrap();
        let sent = serde_json::json!([{"id": "msg_d_lapsed", "claim": d, "provider": "twilio",
            "ref": "SM1", "at": 220}]);
        sqlx::query(include_str!("queries/mark_sent.sql"))
            .bind(sent.to_string())
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT message_id, in_doubt_since FROM message WHERE message_id IN \
             ('msg_c_orphaned', 'msg_d_lapsed') ORDER BY message_id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                ("msg_c_orphaned".to_owned(), Some(100)),
                ("msg_d_lapsed".to_owned(), None),
            ]
        );
    }

    /// A fan-out step touches only its own block of messages: walking the campaign's index
    /// instead makes each step cost as much as every message the campaign already has.
    #[tokio::test]
    async fn the_fan_out_finds_its_block_by_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated(&dir).await;
        for sql in [
            include_str!("queries/insert_message_events_for_block.sql"),
            include_str!("queries/insert_status_events_for_block.sql"),
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let details: Vec<&str> = plan.iter().map(|(_, _, _, d)| d.as_str()).collect();
            assert!(
                details.iter().any(|d| {
                    d.contains("sqlite_autoindex_message_1 (message_id>? AND message_id<?)")
                }),
                "{sql}\n{details:?}"
            );
        }
    }

    /// Each status event names the previous status: the highest-ranked one already in the
    /// message's history below the new one (queued < sending < sent < delivered < read <
    /// every failure), whatever order the statuses arrive in, and a status gets one event
    /// however often it is added. `insert_message_events.sql` finds it by point lookups from
    /// the next rank down; this checks it against the rule on histories in every order a
    /// provider can produce, skipped statuses and failures included.
    #[tokio::test]
    async fn each_status_event_names_the_highest_status_below_it_in_any_arrival_order() {
        use crate::domain::MessageStatus::{
            self, Canceled, Delivered, Failed, Queued, Read, Sending, Sent, Undelivered,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut conn = migrated_with_account(&dir).await;
        let statuses: Vec<MessageStatus> = MessageStatus::ALL
            .into_iter()
            .filter(|s| *s != Canceled)
            .collect();
        // Every ordered pair and triple of distinct statuses, then a few longer runs.
        let mut histories: Vec<Vec<crate::domain::MessageStatus>> = Vec::new();
        for &a in &statuses {
            for b in statuses.iter().filter(|b| **b != a) {
                histories.push(vec![a, *b]);
                for c in statuses.iter().filter(|c| **c != a && *c != b) {
                    histories.push(vec![a, *b, *c]);
                }
            }
        }
        histories.push(vec![Queued, Sending, Sent, Read, Delivered]);
        histories.push(vec![Queued, Sending, Sent, Delivered, Read, Failed]);
        histories.push(vec![Read, Queued, Sent, Sending, Delivered, Undelivered]);

        let mut want: Vec<(String, String, Option<String>)> = Vec::new();
        for (n, history) in histories.iter().enumerate() {
            let id = format!("msg_{n:05}");
            sqlx::query(
                "INSERT INTO message (message_id, account_id, channel, phone_number, body, \
                 priority, status, segments, cost, billing, due_at, expires_at, created_at, \
                 updated_at) VALUES (?, 'acc_1', 'sms', '+14155550123', 'hi', 1, 'queued', 1, \
                 0, 'reserved', 0, 9999999999999, 0, 0)",
            )
            .bind(&id)
            .execute(&mut conn)
            .await
            .unwrap();
            let mut seen: Vec<crate::domain::MessageStatus> = Vec::new();
            for status in history {
                // Named twice in one call: the second entry adds nothing.
                conn.insert_status_events(
                    status_events([(id.as_str(), "acc_1", 1), (id.as_str(), "acc_1", 2)]),
                    status.as_str(),
                )
                .await
                .unwrap();
                let previous = seen
                    .iter()
                    .filter(|s| s.order() < status.order())
                    .max_by_key(|s| s.order())
                    .map(|s| s.as_str().to_owned());
                want.push((id.clone(), status.as_str().to_owned(), previous));
                seen.push(*status);
            }
            // A status already in the history gets no second event.
            if let Some(first) = history.first() {
                conn.insert_status_events(
                    status_events([(id.as_str(), "acc_1", 3)]),
                    first.as_str(),
                )
                .await
                .unwrap();
            }
        }
        let got: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT message_id, status, previous_status FROM event ORDER BY event_seq",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
    }
}
