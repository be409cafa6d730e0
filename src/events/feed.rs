//! The live side of the event log: one task per process tails it and hands each new batch to
//! every connected stream (`GET /api/messaging/events`), so a hundred clients cost one query
//! per poll, not a hundred.
//!
//! A stream subscribes before it reads what it missed from the log, and skips what it has
//! already sent by sequence number: between the two, nothing falls through.

use crate::store::Store;
use crate::store::events::EventRecord;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events read from the log per query.
pub const PAGE: usize = 1000;

/// Batches a slow stream may fall behind by before it goes back to the log.
const BACKLOG: usize = 256;

/// How often the feed keeps up with the log's end while no stream listens.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// New events with their JSON, encoded once for every stream.
pub type Batch = Arc<Vec<(EventRecord, String)>>;

#[derive(Clone)]
pub struct EventFeed {
    tx: broadcast::Sender<Batch>,
    /// Cancelled when Herald stops: streams then end, or the server would wait for them.
    shutdown: CancellationToken,
}

impl EventFeed {
    /// Starts tailing the log every `poll` until `shutdown`, from its present end (or, if
    /// that cannot be read yet, from where it can be read later: on PostgreSQL a transaction
    /// running long elsewhere keeps the end unknown, and that must not stop Herald starting).
    ///
    /// # Errors
    /// None so far; kept for the store's errors a later start may meet.
    pub async fn start(
        store: Store,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> crate::store::StoreResult<Self> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let feed = Self {
            tx,
            shutdown: shutdown.clone(),
        };
        let head = store.last_event_seq().await.ok();
        let tail = feed
            .clone()
            .tail(store, head, poll.max(Duration::from_millis(1)), shutdown);
        tokio::spawn(tail);
        Ok(feed)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.tx.subscribe()
    }

    /// Cancelled when Herald stops.
    pub fn stopping(&self) -> &CancellationToken {
        &self.shutdown
    }

    async fn tail(
        self,
        store: Store,
        mut head: Option<i64>,
        poll: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let Some(mut after) = head else {
                // Streams read the log themselves until the feed knows where it starts.
                match store.last_event_seq().await {
                    Ok(end) => head = Some(end),
                    Err(e) => tracing::debug!(error = %e, "could not read the event log's end"),
                }
                continue;
            };
            if self.tx.receiver_count() == 0 {
                // Nobody listens: only keep up with the log's end (about once a second: on
                // PostgreSQL each look costs a transaction id), so the first listener gets
                // few old batches, which it skips by number. The end is read before the count
                // is checked again: a stream that subscribes after that check reads the log
                // itself past this end.
                if idle_since.elapsed() < IDLE_LOOK {
                    continue;
                }
                idle_since = tokio::time::Instant::now();
                match store.last_event_seq().await {
                    Ok(end) if self.tx.receiver_count() == 0 => head = Some(end),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "could not read the event log's end"),
                }
                continue;
            }
            loop {
                let batch = match store.events_after(after, None, PAGE).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::debug!(error = %e, "could not read the event log");
                        break;
                    }
                };
                let Some(newest) = batch.last().map(|e| e.seq) else {
                    break;
                };
                after = newest;
                head = Some(newest);
                let full = batch.len() == PAGE;
                // No receiver left is fine: the next tick notices.
                let encoded = batch
                    .into_iter()
                    .map(|e| {
                        let data = super::payload(&e).to_string();
                        (e, data)
                    })
                    .collect();
                let _ = self.tx.send(Arc::new(encoded));
                if !full {
                    break;
                }
            }
        }
    }
}
