//! Keeps the overview's status tallies (`GET /overview`) up with the event log: about once a
//! second, the events committed since the last fold are counted per account, status and
//! minute/hour in one grouped statement. A trigger per status change did the same on the
//! delivery path and cost 12 % of dispatch throughput; this costs a read of the new events.
//! Every worker process runs one; on PostgreSQL several fold the same log at once, and the
//! store's cursor makes sure each event is counted once.

use crate::store::Store;
use crate::store::overview::TallyFolder;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the tallies catch up: the overview is at most about this far behind.
const EVERY: Duration = Duration::from_secs(1);
/// Events per fold (one writer transaction), so a long backlog of events never holds the
/// writer for long.
const BATCH: usize = 20_000;

pub(super) async fn run_until(store: Store, shutdown: CancellationToken) -> anyhow::Result<()> {
    // What this loop knows has settled (PostgreSQL; see `Store::fold_tallies`).
    let mut folder = TallyFolder::default();
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        loop {
            match store.fold_tallies(BATCH, &mut folder).await {
                Ok(folded) if folded as usize >= BATCH && !shutdown.is_cancelled() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "counting events for the overview failed; trying again");
                    break;
                }
            }
        }
    }
}
