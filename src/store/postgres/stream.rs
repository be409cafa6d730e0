//! The event log read in order on PostgreSQL, for the live event stream
//! (`GET /api/messaging/events`) and its `Last-Event-ID`.
//!
//! A stream hands out events by number and resumes after the last number a client saw, so it
//! must never hand out a number while a lower one may still commit: that one would fall
//! behind the client's cursor and be missed for good. Identity numbers are not in commit
//! order, so the stream reads only up to a *horizon*: the `upto` of the newest
//! [`SettleMark`] seen to settle, below which every event is final (the argument is in
//! `overview.rs`'s note, and the overview's fold relies on the same marks).
//!
//! The horizon is kept per process. Each time it is asked for, it checks the mark taken the
//! time before and, if that one has settled, moves to it and takes the next: the stream trails
//! the log by about one poll of the event feed, and a call costs three short statements.
//! Only the first call of a process, which has no horizon yet, waits for its mark to settle.

use super::PgStore;
use crate::domain::AccountId;
use crate::store::events::EventRecord;
use crate::store::outbox::EventRow;
use crate::store::overview::SettleMark;
use crate::store::{StoreError, StoreResult, WriteRefusal};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long the first call waits for a mark to settle. Longer means a transaction has been
/// running that long somewhere in the cluster: the caller is told to come back (503).
const FIRST_SETTLE: Duration = Duration::from_secs(5);

/// How often the first call looks again whether its mark has settled.
const SETTLE_POLL: Duration = Duration::from_millis(2);

#[derive(Debug, Default)]
pub(super) struct Horizon {
    /// Every event numbered up to this is final (`None` before the first mark settled).
    settled: Option<i64>,
    /// The mark that becomes the horizon once it settles.
    pending: Option<SettleMark>,
}

impl PgStore {
    /// The highest event number below which every event is final: where a new stream starts.
    pub(in crate::store) async fn last_event_seq(&self) -> StoreResult<i64> {
        self.horizon().await
    }

    /// Events after `after` up to the horizon, oldest first, of one account or of all.
    pub(in crate::store) async fn events_after(
        &self,
        after: i64,
        account_id: Option<&AccountId>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let horizon = self.horizon().await?;
        if horizon <= after {
            return Ok(Vec::new());
        }
        let rows: Vec<EventRow> = sqlx::query_as(concat!(
            include_str!("queries/event_select.sql"),
            // After $1 up to the horizon $2, of account $3 (of all when NULL), oldest first.
            "WHERE e.event_seq > $1 AND e.event_seq <= $2 AND ($3::text IS NULL OR e.account_id = $3)\n",
            "ORDER BY e.event_seq LIMIT $4"
        ))
            .bind(after)
            .bind(horizon)
            .bind(account_id.map(AccountId::as_str))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(EventRow::into_record).collect())
    }

    /// Moves the horizon to the pending mark if it has settled (taking the next one), and
    /// answers it; the first time, waits for a mark to settle.
    async fn horizon(&self) -> StoreResult<i64> {
        let mut horizon = self.horizon.lock().await;
        let give_up = Instant::now() + FIRST_SETTLE;
        loop {
            let mark = match horizon.pending {
                Some(mark) => mark,
                None => *horizon.pending.insert(self.settle_mark().await?),
            };
            if self.mark_settled(mark).await? {
                horizon.settled = Some(horizon.settled.map_or(mark.upto, |s| s.max(mark.upto)));
                // Taken now, so it has had until the next call to settle.
                horizon.pending = Some(self.settle_mark().await?);
            }
            if let Some(settled) = horizon.settled {
                return Ok(settled);
            }
            if Instant::now() >= give_up {
                return Err(StoreError::Refused(WriteRefusal::Busy));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
}

/// Kept in a lock of its own: two streams asking at once share one check.
pub(super) type SharedHorizon = Mutex<Horizon>;
