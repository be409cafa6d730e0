//! The account at a glance (the dashboard's overview): statuses reached per minute for the
//! last hour and per window (24 h, 30 days), the backlog by priority and the balance, read in
//! one snapshot from the status tallies (so the cost does not grow with the number of
//! messages). The workers fold the event log into the tallies about once a second
//! ([`Store::fold_tallies`]), off the delivery path.

use super::sqlite::overview as sql;
use super::{Balance, Store, StoreResult};
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
        sql::overview(self.sqlite()?.reads(), account_id, windows).await
    }

    /// Counts up to `limit` events committed since the last fold into the tallies; returns
    /// how many it took (fewer than `limit`: caught up).
    ///
    /// # Errors
    /// The database refused the write.
    pub async fn fold_tallies(&self, limit: usize) -> StoreResult<u64> {
        self.sqlite()?
            .fold_tallies(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
    }

    /// Forgets minute tallies older than [`MINUTES_KEPT`] and hour tallies older than
    /// [`HOURS_KEPT`]; returns how many rows went.
    ///
    /// # Errors
    /// The database refused the write.
    pub async fn purge_tallies(&self) -> StoreResult<u64> {
        let now = Timestamp::now();
        self.sqlite()?
            .purge_tallies(
                now.minus(MINUTES_KEPT).millis(),
                now.minus(HOURS_KEPT).millis(),
            )
            .await
    }
}
