//! Housekeeping on a timer: this process's heartbeat (which also renews the leases of the
//! messages it holds, so none of them is claimed again while it waits), recovery of messages whose worker died
//! mid-delivery (at start, and whenever a process goes silent; they are released *in doubt*,
//! so the next worker asks the provider whether that attempt arrived before sending again), purging idempotency records
//! past their 24 hours and the overview's status tallies past theirs, dropping held receipts that matched no message within an hour, and
//! trimming idle rate-limiter keys.

use crate::metrics::Metrics;
use crate::ratelimit::DeliveryLimits;
use crate::store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Idempotency records are honoured this long (SPEC §1).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A receipt no message claims within this long reports on none of our sends.
const RECEIPT_HOLD: Duration = Duration::from_secs(60 * 60);

/// A worker process silent for this many heartbeats is dead.
const MISSED_BEATS: u32 = 3;

pub(super) async fn run_until(
    store: Store,
    metrics: Metrics,
    instance_id: String,
    limits: DeliveryLimits,
    every: Duration,
    lease: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let stale_after = every.saturating_mul(MISSED_BEATS);
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        if let Err(e) = sweep(&store, &metrics, &instance_id, lease, stale_after).await {
            tracing::error!(error = %e, "housekeeping failed; trying again next beat");
        }
        limits.forget_idle();
    }
}

async fn sweep(
    store: &Store,
    metrics: &Metrics,
    instance_id: &str,
    lease: Duration,
    stale_after: Duration,
) -> anyhow::Result<()> {
    store.heartbeat(instance_id, lease).await?;
    let released = store.release_orphans(stale_after).await?;
    if released > 0 {
        tracing::warn!(
            released,
            "re-queued messages claimed by a worker process that died"
        );
    }
    store.purge_idempotency_keys(IDEMPOTENCY_TTL).await?;
    let dropped = store.purge_pending_receipts(RECEIPT_HOLD).await?;
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "dropped receipts that matched no message for an hour"
        );
        metrics.receipts_dropped(dropped);
    }
    store.purge_tallies().await?;
    Ok(())
}
