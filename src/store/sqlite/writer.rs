//! The writer task: the only place this process writes to SQLite.
//!
//! It takes every operation waiting in its channel (up to `commit_batch_max`), runs them all in
//! one `BEGIN IMMEDIATE` transaction, commits once, and only then answers each caller. A 202
//! therefore always means "on disk", while a hundred concurrent requests cost one commit.
//! If the transaction fails, every operation in it fails and nothing of it is written.

use super::campaign::{self, CampaignWrite};
use super::{accept, admin, delivery};
use crate::domain::{AccountId, ApiKeyId};
use crate::store::{
    AcceptOutcome, AcceptRequest, ClaimedMessage, DeliveryReport, FanOutRequest, FanOutResult,
    FinishCampaign, NewAccount, StatusUpdate, StoreError, StoreResult, UpdateResult,
};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
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
}

/// An answer computed inside the transaction, sent once the commit is known.
enum Pending {
    Accept(Reply<AcceptOutcome>, StoreResult<AcceptOutcome>),
    Claim(Reply<Vec<ClaimedMessage>>, StoreResult<Vec<ClaimedMessage>>),
    Outcomes(Reply<()>, StoreResult<()>),
    StatusUpdates(Reply<Vec<UpdateResult>>, StoreResult<Vec<UpdateResult>>),
    Maintenance(Reply<u64>, StoreResult<u64>),
    FanOut(Reply<FanOutResult>, StoreResult<FanOutResult>),
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
        }
    }
}

pub(super) async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>, max: usize) {
    let mut ops = Vec::with_capacity(max);
    loop {
        if rx.recv_many(&mut ops, max).await == 0 {
            break;
        }
        let shutdown = ops.iter().any(|op| matches!(op, Op::Shutdown));
        commit_batch(&mut conn, ops.drain(..)).await;
        if shutdown {
            break;
        }
    }
    let _ = conn.close().await;
}

async fn commit_batch(conn: &mut SqliteConnection, ops: impl Iterator<Item = Op>) {
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
        let mut accepts = accept::Batch::default();
        for op in ops {
            match op {
                Op::Accept(request, reply) => {
                    let outcome = accepts.add(&mut tx, request).await;
                    pending.push(Pending::Accept(reply, outcome));
                }
                Op::Claim {
                    instance_id,
                    limit,
                    lease,
                    fair,
                    reply,
                } => {
                    let claimed =
                        delivery::claim_due(&mut tx, &instance_id, limit, lease, fair).await;
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
                Op::Shutdown => {}
            }
        }
        if !outcomes.is_empty() {
            delivery::record_outcomes(&mut tx, std::mem::take(&mut outcomes)).await?;
        }
        for reply in outcome_replies.drain(..) {
            pending.push(Pending::Outcomes(reply, Ok(())));
        }
        if !updates.is_empty() {
            let mut results =
                delivery::apply_status_updates(&mut tx, std::mem::take(&mut updates)).await?;
            for (len, reply) in update_replies.drain(..) {
                let rest = results.split_off(len.min(results.len()));
                pending.push(Pending::StatusUpdates(reply, Ok(results)));
                results = rest;
            }
        }
        accepts.flush(&mut tx).await?;
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    }
    .await;
    let failed = result.err().map(|e| {
        tracing::error!(error = %e, operations = pending.len(), "group commit failed");
        Arc::new(e)
    });
    for done in pending {
        done.send(failed.as_ref());
    }
    // Merged work whose answer was never computed: the transaction failed before it.
    if let Some(e) = &failed {
        for reply in outcome_replies {
            let _ = reply.send(Err(StoreError::CommitFailed(Arc::clone(e))));
        }
        for (_, reply) in update_replies {
            let _ = reply.send(Err(StoreError::CommitFailed(Arc::clone(e))));
        }
    }
}
