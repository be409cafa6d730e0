//! The writer task: the only place this process writes to SQLite.
//!
//! It takes every operation waiting in its channel (up to `commit_batch_max`), runs them all in
//! one `BEGIN IMMEDIATE` transaction, commits once, and only then answers each caller. A 202
//! therefore always means "on disk", while a hundred concurrent requests cost one commit.
//! If the transaction fails, every operation in it fails and nothing of it is written.
//! When the database refuses writes (disk full, I/O error, lock held elsewhere), the writer
//! keeps going: each later batch tries again, so writes resume as soon as the cause is gone.

use super::campaign::{self, CampaignWrite};
use super::{admin, inbound};
use crate::domain::{AccountId, ApiKeyId};
use crate::store::inbound::{InboundOutcome, NewInbound};
use crate::store::outbox::{EventWrite, EventWritten};
use crate::store::{
    AcceptOutcome, AcceptRequest, ClaimedMessage, DeliveryReport, FanOutRequest, FanOutResult,
    FinishCampaign, NewAccount, StatusUpdate, StoreError, StoreResult, UpdateResult, WriteHealth,
    WriteRefusal,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<StoreResult<T>>;

pub(super) enum Op {
    Accept(AcceptRequest, Reply<AcceptOutcome>),
    Claim {
        instance_id: String,
        limit: usize,
        lease: Duration,
        fair: bool,
        reply: Reply<Vec<ClaimedMessage>>,
    },
    Outcomes(Vec<DeliveryReport>, Reply<()>),
    StatusUpdates(Vec<StatusUpdate>, Reply<Vec<UpdateResult>>),
    Maintenance(Maintenance, Reply<u64>),
    Campaign(CampaignWrite, Reply<u64>),
    FinishCampaign(FinishCampaign, Reply<AcceptOutcome>),
    FanOut(FanOutRequest, Reply<FanOutResult>),
    Inbound(Vec<NewInbound>, Reply<Vec<InboundOutcome>>),
    MarkRead(AccountId, Vec<String>, Reply<u64>),
    Events(EventWrite, Reply<EventWritten>),
    Shutdown,
}

pub(super) enum Maintenance {
    CreateAccount(NewAccount, AccountId),
    InsertApiKey {
        api_key_id: ApiKeyId,
        account_id: AccountId,
        key_hash: [u8; 32],
    },
    /// Records that a worker is alive and renews the leases of what it holds.
    Heartbeat {
        instance_id: String,
        lease: Duration,
    },
    ReleaseOrphans(Duration),
    PurgeIdempotency(Duration),
    PurgePendingReceipts(Duration),
    /// Minute tallies before the first, hour tallies before the second (Unix ms).
    PurgeTallies(i64, i64),
    /// Moves the tally cursor from `from` to `to` (only if it is still at `from`) and adds
    /// `counts`, a JSON array of [account_id, minute_start, status, n]; answers 1 if it
    /// did, 0 if another fold got there first.
    FoldTallies {
        from: i64,
        to: i64,
        counts: String,
    },
}

/// An answer computed inside the transaction, sent once the commit is known.
enum Pending {
    Accept(Reply<AcceptOutcome>, StoreResult<AcceptOutcome>),
    Claim(Reply<Vec<ClaimedMessage>>, StoreResult<Vec<ClaimedMessage>>),
    Outcomes(Reply<()>, StoreResult<()>),
    StatusUpdates(Reply<Vec<UpdateResult>>, StoreResult<Vec<UpdateResult>>),
    Maintenance(Reply<u64>, StoreResult<u64>),
    FanOut(Reply<FanOutResult>, StoreResult<FanOutResult>),
    Inbound(Reply<Vec<InboundOutcome>>, StoreResult<Vec<InboundOutcome>>),
    Events(Reply<EventWritten>, StoreResult<EventWritten>),
}

impl Pending {
    fn send(self, failed: Option<&Arc<sqlx::Error>>) {
        fn answer<T>(reply: Reply<T>, result: StoreResult<T>, failed: Option<&Arc<sqlx::Error>>) {
            let result = match failed {
                Some(e) => Err(StoreError::CommitFailed(Arc::clone(e))),
                None => result,
            };
            // The caller may have gone away (client disconnected); the write stands.
            let _ = reply.send(result);
        }
        match self {
            Pending::Accept(r, v) => answer(r, v, failed),
            Pending::Claim(r, v) => answer(r, v, failed),
            Pending::Outcomes(r, v) => answer(r, v, failed),
            Pending::StatusUpdates(r, v) => answer(r, v, failed),
            Pending::Maintenance(r, v) => answer(r, v, failed),
            Pending::FanOut(r, v) => answer(r, v, failed),
            Pending::Inbound(r, v) => answer(r, v, failed),
            Pending::Events(r, v) => answer(r, v, failed),
        }
    }
}

impl Op {
    /// Answers an operation the failed transaction never got to.
    fn refuse(self, e: &Arc<sqlx::Error>) {
        fn answer<T>(reply: Reply<T>, e: &Arc<sqlx::Error>) {
            // As in `Pending::send`: a caller that went away needs no answer.
            let _ = reply.send(Err(StoreError::CommitFailed(Arc::clone(e))));
        }
        match self {
            Op::Accept(_, reply) | Op::FinishCampaign(_, reply) => answer(reply, e),
            Op::Claim { reply, .. } => answer(reply, e),
            Op::Outcomes(_, reply) => answer(reply, e),
            Op::StatusUpdates(_, reply) => answer(reply, e),
            Op::Maintenance(_, reply) | Op::Campaign(_, reply) | Op::MarkRead(_, _, reply) => {
                answer(reply, e)
            }
            Op::Inbound(_, reply) => answer(reply, e),
            Op::Events(_, reply) => answer(reply, e),
            Op::FanOut(_, reply) => answer(reply, e),
            Op::Shutdown => {}
        }
    }
}

impl Pending {
    /// Takes out an error that means the database refuses writes. Such an error fails the
    /// whole transaction, not just its operation: SQLite may already have rolled the
    /// transaction back, and what the other operations wrote must not be committed as if
    /// the failed one had not been part of it. The placeholder left behind is never sent,
    /// since the failed transaction answers every operation with its own error.
    fn take_refusal(&mut self) -> Option<sqlx::Error> {
        fn take<T>(result: &mut StoreResult<T>) -> Option<sqlx::Error> {
            if !matches!(result, Err(StoreError::Database(e)) if WriteRefusal::of(e).is_some()) {
                return None;
            }
            match std::mem::replace(result, Err(StoreError::WriterGone)) {
                Err(StoreError::Database(e)) => Some(e),
                _ => None,
            }
        }
        match self {
            Pending::Accept(_, v) => take(v),
            Pending::Claim(_, v) => take(v),
            Pending::Outcomes(_, v) => take(v),
            Pending::StatusUpdates(_, v) => take(v),
            Pending::Maintenance(_, v) => take(v),
            Pending::FanOut(_, v) => take(v),
            Pending::Inbound(_, v) => take(v),
            Pending::Events(_, v) => take(v),
        }
    }
}

/// The writer's connection, with what it needs to replace it and to report refusals.
pub(super) struct Connection {
    pub(super) conn: SqliteConnection,
    pub(super) options: SqliteConnectOptions,
    pub(super) health: Arc<WriteHealth>,
}

pub(super) async fn run(mut writer: Connection, mut rx: mpsc::Receiver<Op>, max: usize) {
    let mut ops = Vec::with_capacity(max);
    let mut gathering = Gathering::default();
    loop {
        if rx.recv_many(&mut ops, max).await == 0 {
            break;
        }
        gathering.gather(&mut rx, &mut ops, max).await;
        let shutdown = ops.iter().any(|op| matches!(op, Op::Shutdown));
        let committed = commit_batch(&mut writer.conn, ops.drain(..)).await;
        match committed {
            Ok(()) => writer.health.committed(),
            Err(e) => {
                if let Some(refusal) = WriteRefusal::of(&e) {
                    writer.health.refused(refusal, &e);
                } else {
                    tracing::error!(error = %e, "group commit failed");
                }
                recover(&mut writer).await;
            }
        }
        if shutdown {
            break;
        }
    }
    let _ = writer.conn.close().await;
}

/// A batch smaller than this waits a moment for company before it is committed.
const GATHER_BELOW: usize = 64;
/// How long a small batch waits (tokio's timer rounds it up to the next millisecond tick).
const GATHER_WINDOW: Duration = Duration::from_millis(1);
/// After a wait that brought nothing, how long small batches are committed at once.
const GATHER_REST: Duration = Duration::from_millis(100);

/// Waits a moment for more operations when a batch is small.
///
/// Every commit writes each page it touched to the WAL again (the tail of the message table
/// and of its indexes, the account's row, the event log), however few operations it holds. At
/// ordinary rates the channel holds one or two operations at a time, so without a wait the
/// writer committed nearly every operation alone: at 1,000 msg/s the server used 96 % of a
/// core and wrote 53 MB/s, and with the wait 67 % and 35 MB/s (BENCHMARKS.md, "A small
/// batch waits for company"). A caller waits up to two milliseconds more for its answer.
/// A client that sends one request at a time brings nothing to wait for: a wait that
/// gathered nothing stops the waiting for `GATHER_REST`, so such a client pays one wait in
/// a hundred milliseconds.
#[derive(Default)]
struct Gathering {
    rest_until: Option<tokio::time::Instant>,
}

impl Gathering {
    async fn gather(&mut self, rx: &mut mpsc::Receiver<Op>, ops: &mut Vec<Op>, max: usize) {
        let now = tokio::time::Instant::now();
        let enough = GATHER_BELOW.min(max);
        if ops.len() >= enough
            || self.rest_until.is_some_and(|until| now < until)
            || ops.iter().any(|op| matches!(op, Op::Shutdown))
        {
            return;
        }
        let before = ops.len();
        let deadline = now + GATHER_WINDOW;
        while ops.len() < enough {
            let room = max.saturating_sub(ops.len());
            match tokio::time::timeout_at(deadline, rx.recv_many(ops, room)).await {
                Ok(received) if received > 0 => {}
                // The deadline, or a closed channel (the next receive sees it).
                _ => break,
            }
        }
        self.rest_until = (ops.len() == before).then(|| tokio::time::Instant::now() + GATHER_REST);
    }
}

/// After a failed transaction, makes sure the next one can begin. When SQLite rolls a
/// transaction back by itself (it may, on a full disk or an I/O error), sqlx's own rollback
/// then fails and sqlx goes on believing a transaction is open, refusing every later BEGIN:
/// the writer would be dead for good. A fresh connection has no such belief.
async fn recover(writer: &mut Connection) {
    // Runs after the rollback sqlx queued when the transaction was dropped.
    let _ = writer.conn.ping().await;
    if !writer.conn.is_in_transaction() {
        return;
    }
    match writer.options.connect().await {
        Ok(fresh) => {
            // Expected on every refused batch of a full disk, whose episode is logged once.
            tracing::debug!("the write connection lost track of its transaction; reconnected");
            let stale = std::mem::replace(&mut writer.conn, fresh);
            let _ = stale.close().await;
        }
        // The next failed batch tries again.
        Err(e) => tracing::warn!(error = %e, "could not reopen the write connection"),
    }
}

/// Runs `ops` in one transaction and answers each of them. The error is the transaction's,
/// already sent to every caller; the writer only logs it.
async fn commit_batch(
    conn: &mut SqliteConnection,
    ops: impl Iterator<Item = Op>,
) -> Result<(), Arc<sqlx::Error>> {
    // Inbound messages go first, all requests' together (`inbound::record_requests`).
    let (inbound, others): (Vec<Op>, Vec<Op>) = ops.partition(|op| matches!(op, Op::Inbound(..)));
    let (mut inbound_requests, mut inbound_replies) = (Vec::new(), Vec::new());
    for op in inbound {
        if let Op::Inbound(batch, reply) = op {
            inbound_requests.push(batch);
            inbound_replies.push(reply);
        }
    }
    let mut ops = others.into_iter();
    let mut pending = Vec::new();
    // Outcomes and receipts from many callers are merged and written as one statement each,
    // however many workers reported them.
    let mut outcomes = Vec::new();
    let mut outcome_replies = Vec::new();
    let mut updates = Vec::new();
    let mut update_replies = Vec::new();
    let result = async {
        // IMMEDIATE takes the write lock up front, so the reads inside see what we write
        // against, and another process cannot slip in between.
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        if !inbound_requests.is_empty() {
            let results =
                inbound::record_requests(&mut tx, std::mem::take(&mut inbound_requests)).await?;
            for (reply, result) in inbound_replies.drain(..).zip(results) {
                pending.push(Pending::Inbound(reply, result));
            }
        }
        let mut accepts = crate::store::accept::Batch::default();
        let numbers = ops
            .as_slice()
            .iter()
            .filter_map(|op| match op {
                Op::Accept(request, _) => Some(request),
                _ => None,
            })
            .flat_map(|r| {
                r.messages
                    .iter()
                    .map(|m| (&r.account_id, m.phone_number.as_str()))
            })
            .collect();
        accepts.screen_ahead(&mut *tx, numbers).await;
        for op in ops.by_ref() {
            match op {
                Op::Accept(request, reply) => {
                    let outcome = accepts.add(&mut *tx, request).await;
                    pending.push(Pending::Accept(reply, outcome));
                }
                Op::Claim {
                    instance_id,
                    limit,
                    lease,
                    fair,
                    reply,
                } => {
                    let claimed = crate::store::delivery::claim_due(
                        &mut *tx,
                        &instance_id,
                        limit,
                        lease,
                        fair,
                    )
                    .await;
                    pending.push(Pending::Claim(reply, claimed.map_err(StoreError::from)));
                }
                Op::Outcomes(batch, reply) => {
                    outcomes.extend(batch);
                    outcome_replies.push(reply);
                }
                Op::StatusUpdates(batch, reply) => {
                    update_replies.push((batch.len(), reply));
                    updates.extend(batch);
                }
                Op::Maintenance(m, reply) => {
                    pending.push(Pending::Maintenance(reply, admin::run(&mut tx, m).await));
                }
                Op::Campaign(write, reply) => {
                    pending.push(Pending::Maintenance(
                        reply,
                        campaign::run(&mut tx, write).await,
                    ));
                }
                Op::FinishCampaign(finish, reply) => {
                    let outcome = campaign::finish(&mut tx, &mut accepts, finish).await;
                    pending.push(Pending::Accept(reply, outcome));
                }
                Op::FanOut(request, reply) => {
                    let result = campaign::fan_out(&mut tx, &mut accepts, request).await;
                    pending.push(Pending::FanOut(reply, result));
                }
                // Taken out before the loop; stored on its own should one get here.
                Op::Inbound(batch, reply) => {
                    let result = inbound::record_requests(&mut tx, vec![batch]).await?.pop();
                    pending.push(Pending::Inbound(
                        reply,
                        result.unwrap_or(Err(StoreError::WriterGone)),
                    ));
                }
                Op::MarkRead(account_id, ids, reply) => {
                    let marked = inbound::mark_read(&mut tx, &account_id, &ids).await;
                    pending.push(Pending::Maintenance(reply, marked));
                }
                Op::Events(write, reply) => {
                    pending.push(Pending::Events(
                        reply,
                        crate::store::outbox::run(&mut *tx, write).await,
                    ));
                }
                Op::Shutdown => {}
            }
            if let Some(e) = pending.last_mut().and_then(Pending::take_refusal) {
                return Err(e);
            }
        }
        if !outcomes.is_empty() {
            crate::store::delivery::record_outcomes(&mut *tx, std::mem::take(&mut outcomes))
                .await?;
        }
        for reply in outcome_replies.drain(..) {
            pending.push(Pending::Outcomes(reply, Ok(())));
        }
        if !updates.is_empty() {
            let mut results = crate::store::delivery::apply_status_updates(
                &mut *tx,
                std::mem::take(&mut updates),
            )
            .await?;
            for (len, reply) in update_replies.drain(..) {
                let rest = results.split_off(len.min(results.len()));
                pending.push(Pending::StatusUpdates(reply, Ok(results)));
                results = rest;
            }
        }
        accepts.flush(&mut *tx).await?;
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    }
    .await;
    let failed = result.err().map(Arc::new);
    for done in pending {
        done.send(failed.as_ref());
    }
    // Merged work whose answer was never computed, and operations never started: the
    // transaction failed before them.
    if let Some(e) = &failed {
        for reply in outcome_replies {
            let _ = reply.send(Err(StoreError::CommitFailed(Arc::clone(e))));
        }
        for (_, reply) in update_replies {
            let _ = reply.send(Err(StoreError::CommitFailed(Arc::clone(e))));
        }
        for reply in inbound_replies {
            let _ = reply.send(Err(StoreError::CommitFailed(Arc::clone(e))));
        }
        for op in ops {
            op.refuse(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Op {
        Op::Maintenance(
            Maintenance::ReleaseOrphans(Duration::ZERO),
            oneshot::channel().0,
        )
    }

    #[tokio::test]
    async fn a_small_batch_takes_what_arrives_and_a_lonely_one_stops_waiting() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut gathering = Gathering::default();
        let mut ops = Vec::new();
        for _ in 0..2 {
            tx.send(op()).await.ok();
        }
        rx.recv_many(&mut ops, 1).await;
        gathering.gather(&mut rx, &mut ops, 8).await;
        assert_eq!(ops.len(), 2, "the waiting operation joins the batch");
        assert!(gathering.rest_until.is_none(), "the wait brought company");

        // Nothing more arrives: the wait ends at its deadline and waiting rests.
        gathering.gather(&mut rx, &mut ops, 8).await;
        assert_eq!(ops.len(), 2);
        assert!(
            gathering.rest_until.is_some(),
            "a wait that brought nothing rests"
        );
        tx.send(op()).await.ok();
        gathering.gather(&mut rx, &mut ops, 8).await;
        assert_eq!(
            ops.len(),
            2,
            "while resting, a small batch is committed at once"
        );
    }

    #[tokio::test]
    async fn a_full_batch_and_a_shutdown_do_not_wait() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut gathering = Gathering::default();
        tx.send(op()).await.ok();
        let mut ops = vec![op(), op()];
        // With a batch limit of 2 the batch is already full.
        gathering.gather(&mut rx, &mut ops, 2).await;
        assert_eq!(ops.len(), 2);
        assert!(
            gathering.rest_until.is_none(),
            "a full batch does not wait at all"
        );
        let mut ops = vec![Op::Shutdown];
        gathering.gather(&mut rx, &mut ops, 8).await;
        assert_eq!(ops.len(), 1, "a shutdown is committed at once");
        assert!(gathering.rest_until.is_none());
    }
}
