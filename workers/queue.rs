//! [`MessageQueue`]: the apalis backend whose jobs are message rows.
//!
//! apalis's bundled backends would store a second row per message and, measured here, fetch
//! a few thousand jobs a second at best (see `../shared/DEPENDENCIES.md`). Here a claim is one
//! conditional UPDATE per priority lane that marks a whole batch `sending` and leases it to
//! this process; nothing lives outside the database, so nothing has to be re-enqueued after
//! a crash. apalis runs the deliveries: concurrency, graceful shutdown, the worker's events.

use crate::store::{ClaimedMessage, DeliveryOutcome, DeliveryReport, Store, StoreResult};
use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::Task;
use apalis_core::task::task_id::RandomId;
use apalis_core::worker::context::WorkerContext;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tower::layer::util::Identity;

/// After a failed claim, wait this long before trying again (the database may be busy or
/// restarting; a worker must not spin, nor stop).
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// One small top-up claim in this many is a fair one.
const FAIR_EVERY: u64 = 8;

pub struct MessageQueue {
    store: Store,
    instance_id: Arc<str>,
    batch_size: usize,
    lease: Duration,
    poll_interval: Duration,
    /// Claimed messages not yet handed to a delivery, highest priority first: a fetch that
    /// brings an urgent message puts it ahead of the low ones claimed before.
    buffer: BinaryHeap<Buffered>,
    claimed: u64,
    fetches: u64,
    /// Tops the buffer up at least this often while it has room, so new urgent work is seen
    /// even while slow deliveries (a rate-limited sender) keep the buffer from draining.
    top_up: Pin<Box<tokio::time::Sleep>>,
    fetch: Option<BoxFuture<'static, StoreResult<Vec<ClaimedMessage>>>>,
    /// Armed before each fetch, so a notification that lands during the fetch is not lost.
    wake: Option<Pin<Box<OwnedNotified>>>,
    idle: Option<BoxFuture<'static, ()>>,
    close: Option<BoxFuture<'static, StoreResult<()>>>,
}

impl MessageQueue {
    pub fn new(
        store: Store,
        instance_id: String,
        batch_size: usize,
        lease: Duration,
        poll_interval: Duration,
    ) -> Self {
        Self {
            store,
            instance_id: instance_id.into(),
            batch_size,
            lease,
            poll_interval,
            buffer: BinaryHeap::with_capacity(batch_size),
            claimed: 0,
            fetches: 0,
            top_up: Box::pin(tokio::time::sleep(poll_interval)),
            fetch: None,
            wake: None,
            idle: None,
            close: None,
        }
    }

    fn start_fetch(&mut self) {
        let notify: Arc<Notify> = self.store.ready_handle();
        let mut wake = Box::pin(notify.notified_owned());
        wake.as_mut().enable();
        self.wake = Some(wake);
        let store = self.store.clone();
        let instance = Arc::clone(&self.instance_id);
        let (limit, lease) = (
            self.batch_size.saturating_sub(self.buffer.len()).max(1),
            self.lease,
        );
        let next = tokio::time::Instant::now() + self.poll_interval;
        self.top_up.as_mut().reset(next);
        // Refills share the claim between lanes; small top-ups take the most urgent work,
        // except every FAIR_EVERY-th, so a busy slow sender still lets `low` through.
        self.fetches = self.fetches.wrapping_add(1);
        let fair = limit >= self.batch_size / 2 || self.fetches.is_multiple_of(FAIR_EVERY);
        self.fetch =
            Some(async move { store.claim_due(&instance, limit, lease, fair).await }.boxed());
    }

    /// Drives an in-flight fetch; true when it finished (successfully or not).
    fn poll_fetch(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(fetch) = self.fetch.as_mut() else {
            return false;
        };
        let Poll::Ready(result) = fetch.poll_unpin(cx) else {
            return false;
        };
        self.fetch = None;
        match result {
            Ok(claimed) if !claimed.is_empty() => {
                for message in claimed {
                    self.claimed += 1;
                    self.buffer.push(Buffered {
                        order: (message.priority, Reverse(self.claimed)),
                        message,
                    });
                }
            }
            Ok(_) => {
                let wake = self.wake.take();
                let interval = self.poll_interval;
                self.idle = Some(
                    async move {
                        let sleep = tokio::time::sleep(interval);
                        match wake {
                            Some(wake) => {
                                tokio::select! { () = wake => {}, () = sleep => {} }
                            }
                            None => sleep.await,
                        }
                    }
                    .boxed(),
                );
            }
            // The writer logs a refusing database once per episode; every second here
            // would repeat it.
            Err(e) if e.refusal().is_some() => {
                tracing::debug!(error = %e, "claiming due messages failed; retrying");
                self.idle = Some(tokio::time::sleep(ERROR_BACKOFF).boxed());
            }
            Err(e) => {
                tracing::error!(error = %e, "claiming due messages failed; retrying");
                self.idle = Some(tokio::time::sleep(ERROR_BACKOFF).boxed());
            }
        }
        true
    }
}

impl Backend for MessageQueue {
    type Task = Task<ClaimedMessage>;
    /// Never produced: failures to claim are logged and retried, since an error here would
    /// stop the apalis worker for good.
    type Error = std::io::Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        loop {
            // Refill early, while the buffer still feeds the deliveries, and top it up every
            // poll interval while it has room (slow deliveries keep it from draining).
            if self.fetch.is_none() && self.idle.is_none() && self.buffer.len() < self.batch_size {
                let low = self.buffer.len() <= self.batch_size / 2;
                if low || self.top_up.as_mut().poll(cx).is_ready() {
                    self.start_fetch();
                }
            }
            let fetched = self.poll_fetch(cx);
            if !self.buffer.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if fetched {
                continue;
            }
            if let Some(idle) = self.idle.as_mut() {
                match idle.poll_unpin(cx) {
                    Poll::Ready(()) => {
                        self.idle = None;
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            return Poll::Pending;
        }
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        // The worker calls poll_ready first; an empty buffer here only means it did not.
        // Never answer None: that would tell apalis the queue is exhausted for good.
        if self.buffer.is_empty() {
            match self.poll_ready(cx, worker) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.buffer.pop() {
            Some(buffered) => Poll::Ready(Some(Ok(Task::new(buffered.message)))),
            None => Poll::Pending,
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.close.is_none() {
            // Claimed but never started: give them back so another worker (or the next
            // start) sends them without waiting for the lease to run out.
            let released: Vec<DeliveryReport> = self
                .buffer
                .drain()
                .map(|b| DeliveryReport::of(&b.message, DeliveryOutcome::Released))
                .collect();
            let store = self.store.clone();
            let fetch = self.fetch.take();
            self.close = Some(
                async move {
                    let mut released = released;
                    // A fetch already sent to the writer will claim rows: wait for it and
                    // release those too.
                    if let Some(fetch) = fetch
                        && let Ok(claimed) = fetch.await
                    {
                        released.extend(
                            claimed
                                .iter()
                                .map(|m| DeliveryReport::of(m, DeliveryOutcome::Released)),
                        );
                    }
                    if released.is_empty() {
                        return Ok(());
                    }
                    store.record_outcomes(released).await
                }
                .boxed(),
            );
        }
        match self.close.as_mut().map(|close| close.poll_unpin(cx)) {
            Some(Poll::Ready(result)) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not release unstarted messages; their lease will run out");
                }
                Poll::Ready(Ok(()))
            }
            Some(Poll::Pending) => Poll::Pending,
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A claimed message and its place in the buffer: priority, then claim order.
struct Buffered {
    order: (crate::domain::Priority, Reverse<u64>),
    message: ClaimedMessage,
}

impl PartialEq for Buffered {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl Eq for Buffered {}

impl PartialOrd for Buffered {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Buffered {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order.cmp(&other.order)
    }
}

impl BackendConfig for MessageQueue {
    type Args = ClaimedMessage;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = Identity;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        Identity::new()
    }
}
