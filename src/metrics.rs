//! Prometheus metrics served at `/metrics`: messages accepted, sent and failed, queue depth
//! by priority (read from the database at scrape time, so it is true across processes), and
//! request latency by route, what became of provider receipts, and of sends left in doubt by
//! a crash.

use crate::domain::{Channel, MessageStatus, Priority};
use crate::store::UpdateResult;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;

/// What the provider answered when asked whether an in-doubt attempt reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDoubtResult {
    /// It did: recorded as sent, not sent again.
    Found,
    /// It did not: sent now.
    NotFound,
    /// The provider cannot be asked: sent again (also counted in `resent_in_doubt`).
    CannotAsk,
    /// Asking failed: asked again later.
    Failed,
}

impl InDoubtResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Found => "found",
            Self::NotFound => "not_found",
            Self::CannotAsk => "cannot_ask",
            Self::Failed => "failed",
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    accepted: Family<Labels, Counter>,
    finished: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    requests: Family<Labels, Histogram>,
    receipts: Family<Labels, Counter>,
    receipts_pending: Gauge,
    receipts_dropped: Counter,
    in_doubt: Family<Labels, Counter>,
    resent_in_doubt: Family<Labels, Counter>,
    inbound: Family<Labels, Counter>,
    circuit_open: Family<Labels, Gauge>,
    webhook_attempts: Family<Labels, Counter>,
    redis_up: Family<Labels, Gauge>,
}

/// Request latency buckets, 0.5 ms to 2.5 s: the API answers in milliseconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let accepted = Family::<Labels, Counter>::default();
        let finished = Family::<Labels, Counter>::default();
        let queue_depth = Family::<Labels, Gauge>::default();
        let requests =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register(
            "messages_accepted",
            "Messages accepted by the API",
            accepted.clone(),
        );
        registry.register(
            "messages_delivery_finished",
            "Deliveries finished, by outcome (sent, failed, expired)",
            finished.clone(),
        );
        registry.register(
            "queue_depth",
            "Messages waiting for delivery, by priority",
            queue_depth.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "API request latency",
            requests.clone(),
        );
        let receipts = Family::<Labels, Counter>::default();
        let receipts_pending = Gauge::default();
        let receipts_dropped = Counter::default();
        registry.register(
            "receipts",
            "Provider receipts received, by result: applied, stale (late or repeated, changed \
             nothing), held (no message carries the provider id yet)",
            receipts.clone(),
        );
        registry.register(
            "receipts_pending",
            "Receipts held because no message carries their provider id",
            receipts_pending.clone(),
        );
        registry.register(
            "receipts_dropped",
            "Held receipts dropped after an hour: they matched no message of ours",
            receipts_dropped.clone(),
        );
        let in_doubt = Family::<Labels, Counter>::default();
        let resent_in_doubt = Family::<Labels, Counter>::default();
        registry.register(
            "in_doubt_lookups",
            "Sends left in doubt by a crash that the provider was asked about, by provider and \
             answer: found (recorded, not sent again), not_found (sent), cannot_ask (sent \
             again), failed (asked again later)",
            in_doubt.clone(),
        );
        registry.register(
            "resent_in_doubt",
            "Sends left in doubt by a crash that were sent again without the provider saying \
             whether the first attempt arrived (it cannot be asked, or could not be within the \
             attempts): possible duplicates unless the provider absorbs replays by message id",
            resent_in_doubt.clone(),
        );
        let inbound = Family::<Labels, Counter>::default();
        registry.register(
            "inbound",
            "Inbound messages by where they came from (api, twilio, whatsapp_cloud, mock) and \
             what became of them: stored, repeat (a provider's retry, stored once before), \
             unroutable (kept; no account owns the number)",
            inbound.clone(),
        );
        let circuit_open = Family::<Labels, Gauge>::default();
        registry.register(
            "provider_circuit_open",
            "1 while a channel's primary provider is failing and sends go to its fallback",
            circuit_open.clone(),
        );
        let webhook_attempts = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Posts of events to customers by target (webhook, status_callback) and result: \
             delivered (a 2xx), retry (failed, tried again later), gave_up",
            webhook_attempts.clone(),
        );
        let redis_up = Family::<Labels, Gauge>::default();
        registry.register(
            "redis_up",
            "1 while Redis answers, 0 while it does not and each limit is kept to this \
             process's share (redis.local_share); absent without redis.url",
            redis_up.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                webhook_attempts,
                redis_up,
                registry,
                accepted,
                finished,
                queue_depth,
                requests,
                receipts,
                receipts_pending,
                receipts_dropped,
                in_doubt,
                resent_in_doubt,
                inbound,
                circuit_open,
            }),
        }
    }
}

impl Metrics {
    pub fn accepted(&self, channel: Channel, count: u64) {
        self.inner
            .accepted
            .get_or_create(&vec![("channel", channel.as_str().to_owned())])
            .inc_by(count);
    }

    pub fn delivery_finished(&self, channel: Channel, status: MessageStatus) {
        self.inner
            .finished
            .get_or_create(&vec![
                ("channel", channel.as_str().to_owned()),
                ("status", status.as_str().to_owned()),
            ])
            .inc();
    }

    pub fn set_queue_depth(&self, priority: Priority, waiting: i64) {
        self.inner
            .queue_depth
            .get_or_create(&vec![("priority", priority.as_str().to_owned())])
            .set(waiting);
    }

    pub fn receipt(&self, result: UpdateResult) {
        let result = match result {
            UpdateResult::Applied => "applied",
            UpdateResult::Stale => "stale",
            UpdateResult::Held => "held",
        };
        self.inner
            .receipts
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    pub fn set_pending_receipts(&self, held: i64) {
        self.inner.receipts_pending.set(held);
    }

    pub fn receipts_dropped(&self, count: u64) {
        self.inner.receipts_dropped.inc_by(count);
    }

    /// Shows `provider`'s in-doubt counters from the start, at zero.
    pub fn provider_started(&self, provider: &str) {
        let _ = self
            .inner
            .resent_in_doubt
            .get_or_create(&vec![("provider", provider.to_owned())]);
    }

    pub fn in_doubt(&self, provider: &str, result: InDoubtResult) {
        self.inner
            .in_doubt
            .get_or_create(&vec![
                ("provider", provider.to_owned()),
                ("result", result.as_str().to_owned()),
            ])
            .inc();
    }

    pub fn resent_in_doubt(&self, provider: &str) {
        self.inner
            .resent_in_doubt
            .get_or_create(&vec![("provider", provider.to_owned())])
            .inc();
    }

    /// One inbound message from `provider`, and what became of it.
    pub fn inbound(&self, provider: &'static str, result: &'static str) {
        self.inner
            .inbound
            .get_or_create(&vec![
                ("provider", provider.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    pub fn webhook_attempt(&self, target: &'static str, result: &'static str) {
        self.inner
            .webhook_attempts
            .get_or_create(&vec![
                ("target", target.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    pub fn set_redis_up(&self, up: bool) {
        self.inner
            .redis_up
            .get_or_create(&vec![("use", "limits".to_owned())])
            .set(i64::from(up));
    }

    pub fn set_circuit_open(&self, channel: Channel, provider: &str, open: bool) {
        self.inner
            .circuit_open
            .get_or_create(&vec![
                ("channel", channel.as_str().to_owned()),
                ("provider", provider.to_owned()),
            ])
            .set(i64::from(open));
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.inner
            .requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .observe(seconds);
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}
