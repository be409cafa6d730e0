//! The overview on PostgreSQL: its reads, and the fold of the event log into the status
//! tallies. The rules (bucket lengths, windows, the overview's shape) are
//! `store::overview`'s; here are only the statements and their rows.
//!
//! # Folding when event numbers are not in commit order
//!
//! `event.event_seq` is an identity: a number is handed out when the event is inserted, and
//! transactions (of many processes) commit in any order. A fold that moved its cursor to the
//! highest number it sees could pass event 10 while the transaction holding it is still
//! running; once that commits, event 10 is below the cursor and never counted. (Stopping at
//! the first row whose `xmin` is not older than every running transaction is not enough
//! either: a transaction gets its id at its first write and its event's number later, so an
//! old transaction can take number 11 after a younger, still running one took number 10.)
//!
//! So a fold only goes as far as a [`SettleMark`] `(upto, xid)` that has settled:
//!
//! * `upto` is the highest number one statement's snapshot sees (`settle_mark_upto.sql`),
//!   and `xid` a transaction id assigned after that statement ended (`settle_mark_xid.sql`,
//!   committed at once). Every event numbered up to `upto` was written by a transaction
//!   whose id is below `xid`, because (1) the identity's sequence hands numbers out in
//!   increasing order over time (CACHE 1, the default the migration keeps), so each number
//!   up to `upto` was handed out before `upto` was, which committed before the snapshot;
//!   (2) status events are written only by the statements that add history rows
//!   (`insert_status_events.sql`, `fanout_insert.sql`, `insert_messages.sql`: the history
//!   or message insert in a WITH, whose rows the event insert reads; `claim_lane.sql`,
//!   `mark_sent.sql` and `apply_status_update.sql`: the message update), and inbound
//!   events only by the AFTER INSERT trigger on `inbound_message`, so an event's
//!   transaction already holds an id, from that history or inbound insert, when the
//!   event's number is handed out;
//!   (3) transaction ids are handed out in increasing order, and `xid` came after all that.
//! * The mark has settled once the oldest transaction still running anywhere in the cluster
//!   (`pg_snapshot_xmin`) is younger than `xid` (`tallies_settled.sql`). Then every
//!   transaction that wrote an event numbered up to `upto` has ended: each such event is
//!   committed and seen by every later snapshot, or rolled back and never will be. The
//!   events up to `upto` are final.
//!
//! A fold is one transaction ([`super::Writer::write`], run again on SQLSTATE class 40): it
//! checks that its mark has settled, reads the cursor `from`, picks `to` (at most `limit`
//! events on, never past `upto`), moves the cursor from `from` to `to` only if it is still at
//! `from` (`move_tally_cursor.sql`, the fence), and adds the counts of the events numbered in
//! `(from, to]` in the same transaction (`fold_tallies.sql`). A second fold racing it blocks
//! on the cursor row's lock and, under READ COMMITTED, finds the cursor moved: it updates no
//! row and adds nothing. So the cursor only ever moves over final events, each range is
//! added once, atomically with the move, and the ranges follow one another: every event is
//! counted exactly once, whichever processes fold, in whatever order.
//!
//! A mark is a fact about the database, not about a process, so each folding loop keeps its
//! own in memory ([`crate::store::overview::TallyFolder`]) and takes a new one when it has
//! folded up to it: the tallies trail the event log by a tick or two (about two seconds),
//! and while a transaction runs for long anywhere in the cluster (a session idle in a
//! transaction) folding waits for it; nothing is lost. Each mark costs one transaction id.

use super::PgStore;
use crate::domain::{AccountId, Money, Timestamp};
use crate::store::overview::{HOUR_MS, MINUTE_MS, OverviewRows, SettleMark, Windows};
use crate::store::{Balance, StoreError, StoreResult};
use sqlx::{Connection, Row};

/// What one fold did.
#[derive(Debug, Clone, Copy)]
struct Fold {
    /// Events counted (all of them, though only status events are tallied).
    folded: u64,
    /// The cursor is at (or past) the mark: a new mark is needed to go further.
    reached_mark: bool,
}

impl PgStore {
    /// The overview's rows, from one snapshot so its parts agree.
    pub(in crate::store) async fn overview(
        &self,
        account_id: &AccountId,
        windows: Windows,
    ) -> StoreResult<OverviewRows> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let row = sqlx::query(include_str!("queries/load_balance.sql"))
            .bind(account_id.as_str())
            .bind(Timestamp::now().day())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NoSuchAccount(account_id.to_string()))?;
        let balance = Balance {
            available: Money::from_units(row.try_get("available")?),
            currency: row.try_get("currency")?,
            sent_today: row.try_get("sent_today")?,
            accepted_today: row.try_get("accepted_today")?,
            daily_limit: row.try_get("daily_limit")?,
        };
        let minutes = sqlx::query_as(include_str!("queries/overview_minutes.sql"))
            .bind(account_id.as_str())
            .bind(MINUTE_MS)
            .bind(windows.minutes_from)
            .fetch_all(&mut *tx)
            .await?;
        let window_rows = sqlx::query_as(include_str!("queries/overview_windows.sql"))
            .bind(account_id.as_str())
            .bind(HOUR_MS)
            .bind(windows.month_from)
            .bind(windows.day_from)
            .fetch_all(&mut *tx)
            .await?;
        let queue = sqlx::query_as(include_str!("queries/overview_queue.sql"))
            .bind(account_id.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(OverviewRows {
            balance,
            minutes,
            windows: window_rows,
            queue,
        })
    }

    /// Folds up to `limit` settled events into the tallies (see the module's note); `mark`
    /// is the calling loop's memory. Returns how many events were folded.
    pub(in crate::store) async fn fold_tallies(
        &self,
        limit: i64,
        mark: &mut Option<SettleMark>,
    ) -> StoreResult<u64> {
        if limit < 1 {
            return Ok(0);
        }
        let settling = match *mark {
            Some(settling) => settling,
            None => *mark.insert(self.settle_mark().await?),
        };
        let fold = self.fold_settled(settling, limit).await?;
        tracing::debug!(
            folded = fold.folded,
            upto = settling.upto,
            reached = fold.reached_mark,
            "tally fold ran"
        );
        if fold.reached_mark {
            // Taken now, so it has had until the next fold to settle. If it cannot be taken,
            // the next fold tries again (and reports the error).
            *mark = self.settle_mark().await.ok();
        }
        Ok(fold.folded)
    }

    /// A new mark: the highest event number visible now, then a transaction id assigned
    /// after that read (two statements, in that order: see the module's note).
    pub(super) async fn settle_mark(&self) -> StoreResult<SettleMark> {
        let upto: i64 = sqlx::query_scalar(include_str!("queries/settle_mark_upto.sql"))
            .fetch_one(&self.pool)
            .await?;
        let xid: i64 = sqlx::query_scalar(include_str!("queries/settle_mark_xid.sql"))
            .fetch_one(&self.pool)
            .await?;
        Ok(SettleMark { upto, xid })
    }

    /// Whether `mark` has settled: every event numbered up to its `upto` is final.
    pub(super) async fn mark_settled(&self, mark: SettleMark) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar(include_str!("queries/tallies_settled.sql"))
                .bind(mark.xid)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// One fold up to `mark`, if it has settled.
    async fn fold_settled(&self, mark: SettleMark, limit: i64) -> StoreResult<Fold> {
        self.write(|conn| {
            Box::pin(async move {
                let settled: bool = sqlx::query_scalar(include_str!("queries/tallies_settled.sql"))
                    .bind(mark.xid)
                    .fetch_one(&mut *conn)
                    .await?;
                if !settled {
                    return Ok(Fold {
                        folded: 0,
                        reached_mark: false,
                    });
                }
                let from: i64 = sqlx::query_scalar(include_str!("queries/tally_cursor.sql"))
                    .fetch_one(&mut *conn)
                    .await?;
                if from >= mark.upto {
                    // Another process folded this far already.
                    return Ok(Fold {
                        folded: 0,
                        reached_mark: true,
                    });
                }
                let (last, events): (Option<i64>, i64) =
                    sqlx::query_as(include_str!("queries/events_to_fold.sql"))
                        .bind(from)
                        .bind(mark.upto)
                        .bind(limit)
                        .fetch_one(&mut *conn)
                        .await?;
                // Fewer than `limit`: every event up to the mark is in this fold, and the
                // numbers after the last of them up to the mark were rolled back (the mark
                // has settled), so the cursor can go to the mark itself.
                let to = match last {
                    Some(last) if events >= limit => last,
                    _ => mark.upto,
                };
                let moved = sqlx::query(include_str!("queries/move_tally_cursor.sql"))
                    .bind(from)
                    .bind(to)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if moved != 1 {
                    // Another fold moved the cursor first and counted these events.
                    return Ok(Fold {
                        folded: 0,
                        reached_mark: false,
                    });
                }
                sqlx::query(include_str!("queries/fold_tallies.sql"))
                    .bind(from)
                    .bind(to)
                    .bind(MINUTE_MS)
                    .bind(HOUR_MS)
                    .execute(&mut *conn)
                    .await?;
                Ok(Fold {
                    folded: u64::try_from(events).unwrap_or(0),
                    reached_mark: to == mark.upto,
                })
            })
        })
        .await
    }

    /// Forgets minute tallies that began before `minutes_before` and hour tallies that began
    /// before `hours_before` (Unix milliseconds); returns how many rows went.
    pub(in crate::store) async fn purge_tallies(
        &self,
        minutes_before: i64,
        hours_before: i64,
    ) -> StoreResult<u64> {
        // A transaction of the writer's: run again should it deadlock with a fold adding to
        // a bucket it deletes (an event whose time is older than the minutes kept).
        self.write(|conn| {
            Box::pin(async move {
                Ok(sqlx::query(include_str!("queries/purge_tallies.sql"))
                    .bind(minutes_before)
                    .bind(hours_before)
                    .bind(MINUTE_MS)
                    .bind(HOUR_MS)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())
            })
        })
        .await
    }
}
