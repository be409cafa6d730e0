//! The receipt path: every provider's receipts (webhooks, or the mock's network) go through
//! [`ReceiptSink::deliver`], which returns only once they are on disk, so a provider (or a
//! webhook's `200`) is told "received" only for what a crash cannot lose.
//!
//! A receipt can overtake our own record of the send (the provider answers, its callback
//! arrives, and only then our write commits). The store holds such a receipt durably and
//! applies it in the transaction that records the send; it is never applied twice, since a
//! status only moves forward and each status appears once in a history.

use crate::metrics::Metrics;
use crate::store::{StatusUpdate, Store, StoreResult};

#[derive(Clone)]
pub struct ReceiptSink {
    store: Store,
    metrics: Metrics,
}

impl ReceiptSink {
    pub fn new(store: Store, metrics: Metrics) -> Self {
        Self { store, metrics }
    }

    /// Applies `updates` (or holds those that match no message yet) and returns once that is
    /// committed. On an error nothing of them was recorded: the caller delivers them again.
    ///
    /// # Errors
    /// The database refused the write.
    pub async fn deliver(&self, updates: Vec<StatusUpdate>) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let results = self.store.apply_status_updates(updates).await?;
        for result in results {
            self.metrics.receipt(result);
        }
        Ok(())
    }
}
