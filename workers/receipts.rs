//! Applies provider receipts in batches. A receipt can overtake our own record of the send
//! (the provider answers, its callback arrives, and only then our write commits); such a
//! receipt is held and tried again for a while instead of being dropped.

use crate::store::{StatusUpdate, Store, UpdateResult};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 1024;
/// How long an unmatched receipt is kept trying.
const HOLD_FOR: Duration = Duration::from_secs(30);
const RETRY_EVERY: Duration = Duration::from_millis(100);

pub struct ReceiptApplier {
    store: Store,
    rx: mpsc::Receiver<StatusUpdate>,
}

impl ReceiptApplier {
    pub(super) fn new(store: Store, rx: mpsc::Receiver<StatusUpdate>) -> Self {
        Self { store, rx }
    }

    /// Runs until `shutdown`, then applies what already arrived and stops.
    pub async fn run_until(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut held: Vec<(Instant, StatusUpdate)> = Vec::new();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
                () = tokio::time::sleep(RETRY_EVERY), if !held.is_empty() => {},
                () = shutdown.cancelled() => {
                    while let Ok(update) = self.rx.try_recv() {
                        batch.push(update);
                    }
                    self.apply(&mut batch, &mut held).await;
                    break;
                }
            }
            // Held receipts ride along with the next batch.
            let now = Instant::now();
            held.retain(|(since, u)| {
                let keep = now.duration_since(*since) < HOLD_FOR;
                if !keep {
                    tracing::warn!(provider = u.provider, provider_message_id = %u.provider_message_id, "dropping a receipt for a message we never sent");
                }
                keep
            });
            self.apply(&mut batch, &mut held).await;
        }
        Ok(())
    }

    async fn apply(&self, batch: &mut Vec<StatusUpdate>, held: &mut Vec<(Instant, StatusUpdate)>) {
        let mut since: Vec<Instant> = vec![Instant::now(); batch.len()];
        for (at, update) in held.drain(..) {
            batch.push(update);
            since.push(at);
        }
        if batch.is_empty() {
            return;
        }
        let updates: Vec<StatusUpdate> = std::mem::take(batch);
        match self.store.apply_status_updates(updates.clone()).await {
            Ok(results) => {
                for ((update, result), at) in updates.into_iter().zip(results).zip(since) {
                    if result == UpdateResult::Unknown {
                        held.push((at, update));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "applying receipts failed; holding them");
                held.extend(since.into_iter().zip(updates));
            }
        }
    }
}
