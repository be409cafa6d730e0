//! The account at a glance (the dashboard's overview): statuses reached per minute for the
//! last hour and per window (24 h, 30 days), the backlog by priority and the balance, read in
//! one snapshot from the status tallies (so the cost does not grow with the number of
//! messages). The workers fold the event log into the tallies about once a second
//! ([`Store::fold_tallies`]), off the delivery path.
//!
//! The rules (bucket lengths, windows, how rows become an [`Overview`]) are here; each
//! dialect has only its statements and their rows (`sqlite/overview.rs`,
//! `postgres/overview.rs`, which also explains how PostgreSQL folds without missing an
//! event whose number was handed out before a later one's but committed after it).

use super::sqlite::overview as sql;
use super::{Backend, Balance, Store, StoreError, StoreResult};
use crate::domain::{AccountId, MessageStatus, Priority, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The tallies' bucket lengths, in milliseconds (the `span` column).
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
/// Minute tallies are kept this long, hour tallies [`HOURS_KEPT`].
pub const MINUTES_KEPT: Duration = Duration::from_secs(2 * 3600);
pub const HOURS_KEPT: Duration = Duration::from_secs(32 * 24 * 3600);

/// How many messages reached each status.
pub type Reached = HashMap<MessageStatus, i64>;

#[derive(Debug, Clone)]
pub struct Overview {
    pub balance: Balance,
    /// Bucket start → statuses reached in that minute, from `minutes_from` on.
    pub minutes: BTreeMap<i64, Reached>,
    /// Waiting or being handed over, by priority.
    pub queue: Vec<(Priority, i64)>,
    /// Reached in the hours from `day_from`, and from `month_from`.
    pub last_day: Reached,
    pub last_month: Reached,
}

/// Where the overview's windows start (bucket starts, Unix milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub minutes_from: i64,
    pub day_from: i64,
    pub month_from: i64,
}

impl Windows {
    /// The last `minutes` whole minutes (the current one included), and the last 24 and
    /// 720 hours (the current one included), as of `now`.
    pub fn ending(now: Timestamp, minutes: i64) -> Windows {
        let ms = now.millis();
        let this_minute = ms - ms.rem_euclid(MINUTE_MS);
        let this_hour = ms - ms.rem_euclid(HOUR_MS);
        Windows {
            minutes_from: this_minute - (minutes - 1) * MINUTE_MS,
            day_from: this_hour - 23 * HOUR_MS,
            month_from: this_hour - (30 * 24 - 1) * HOUR_MS,
        }
    }
}

/// The overview's rows as every dialect's statements select them; [`Overview::from_rows`]
/// shapes them.
pub(crate) struct OverviewRows {
    pub(crate) balance: Balance,
    /// `(bucket, status, n)`: the minute tallies from `minutes_from` on.
    pub(crate) minutes: Vec<(i64, String, i64)>,
    /// `(status, last_day, last_month)`: the hour tallies summed over each window.
    pub(crate) windows: Vec<(String, i64, i64)>,
    /// `(priority rank, waiting)`.
    pub(crate) queue: Vec<(i64, i64)>,
}

fn status(raw: &str) -> StoreResult<MessageStatus> {
    MessageStatus::parse(raw).ok_or_else(|| {
        StoreError::Invalid(format!("a tallied status Herald never writes: {raw:?}"))
    })
}

impl Overview {
    pub(crate) fn from_rows(rows: OverviewRows) -> StoreResult<Overview> {
        let mut minutes: BTreeMap<i64, Reached> = BTreeMap::new();
        for (bucket, reached, n) in rows.minutes {
            *minutes
                .entry(bucket)
                .or_default()
                .entry(status(&reached)?)
                .or_default() += n;
        }
        let (mut last_day, mut last_month) = (Reached::new(), Reached::new());
        for (reached, day, month) in rows.windows {
            let reached = status(&reached)?;
            last_day.insert(reached, day);
            last_month.insert(reached, month);
        }
        let queue = rows
            .queue
            .into_iter()
            .map(|(rank, waiting)| {
                let priority = Priority::from_rank(rank).ok_or_else(|| {
                    StoreError::Invalid(format!("a stored priority Herald never writes: {rank}"))
                })?;
                Ok((priority, waiting))
            })
            .collect::<StoreResult<_>>()?;
        Ok(Overview {
            balance: rows.balance,
            minutes,
            queue,
            last_day,
            last_month,
        })
    }
}

/// What one folding loop remembers from one fold to the next.
///
/// On SQLite nothing: its single writer hands out event numbers in commit order, so the
/// events after the cursor that a read sees are all there will ever be below the last of
/// them. On PostgreSQL numbers are not commit-ordered, so a fold only goes as far as a
/// `SettleMark` it took earlier and has since seen settle (see `postgres/overview.rs`).
#[derive(Debug, Default)]
pub struct TallyFolder {
    pub(crate) mark: Option<SettleMark>,
}

/// Every event numbered up to `upto` was written by a transaction whose id is below `xid`
/// (PostgreSQL's 64-bit transaction ids). Once no transaction below `xid` is still running,
/// those events are final: each committed (and seen by every later snapshot) or rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SettleMark {
    pub(crate) upto: i64,
    pub(crate) xid: i64,
}

impl Store {
    /// The account's overview.
    ///
    /// # Errors
    /// The database failed the read, or the account does not exist.
    pub async fn overview(
        &self,
        account_id: &AccountId,
        windows: Windows,
    ) -> StoreResult<Overview> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => sql::overview(s.reads(), account_id, windows).await?,
            Backend::Postgres(p) => p.overview(account_id, windows).await?,
        };
        Overview::from_rows(rows)
    }

    /// Counts up to `limit` events committed since the last fold into the tallies; returns
    /// how many it took (fewer than `limit`: caught up as far as `folder` knows). Several
    /// folders (in several processes) may run at once: each event is counted once.
    ///
    /// # Errors
    /// The database refused the write.
    pub async fn fold_tallies(&self, limit: usize, folder: &mut TallyFolder) -> StoreResult<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match &self.backend {
            Backend::Sqlite(s) => s.fold_tallies(limit).await,
            Backend::Postgres(p) => p.fold_tallies(limit, &mut folder.mark).await,
        }
    }

    /// Forgets minute tallies older than [`MINUTES_KEPT`] and hour tallies older than
    /// [`HOURS_KEPT`]; returns how many rows went.
    ///
    /// # Errors
    /// The database refused the write.
    pub async fn purge_tallies(&self) -> StoreResult<u64> {
        let now = Timestamp::now();
        let (minutes_before, hours_before) = (
            now.minus(MINUTES_KEPT).millis(),
            now.minus(HOURS_KEPT).millis(),
        );
        match &self.backend {
            Backend::Sqlite(s) => s.purge_tallies(minutes_before, hours_before).await,
            Backend::Postgres(p) => p.purge_tallies(minutes_before, hours_before).await,
        }
    }
}
