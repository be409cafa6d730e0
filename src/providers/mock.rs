//! The mock provider (SPEC §5): no network, outcomes chosen by the last four digits of the
//! number, receipts sent back later through the same path a real provider's webhooks take.
//!
//! | ends in | outcome |
//! |---|---|
//! | 0000 | fails permanently, `unreachable` |
//! | 0001 | fails transiently (`temporarily_unavailable`) twice, then as a normal number |
//! | 0002 | sent, never a receipt |
//! | 0003 | delivered, never read |
//! | 0004 | sent, then `undelivered` |
//! | other | sent → delivered → read |
//!
//! The mock plays the network, so it outlives Herald: it keeps a journal (`journal.rs`) of
//! every call to `send` — acceptances, replays of an id it already accepted, refusals — and of
//! how far its receipts have been delivered. At start it reads the journal back, so after a
//! crash it still recognizes replays and still sends every receipt that was due.
//!
//! Like a real provider with idempotency tokens, it accepts a message id once within
//! `idempotency_window_seconds`: sending it again returns the first acceptance. Its memory is
//! that window (and at most a quarter more: see `recent`), not every message ever sent. The
//! same memory answers in-doubt lookups ([`Provider::find_sent`]): within the window it
//! knows whether it accepted a message id, so a send left in doubt by a crash is resolved
//! without sending again; an attempt older than the window cannot be asked about (the
//! replay would be accepted as new).
//!
//! Faults on purpose (all off by default): a share of sends refused as transient failures, as
//! throttled (with `Retry-After`), or timed out (half of those after the mock accepted, so
//! the outcome is in doubt, as with a real network), and added latency.
//!
//! Replies (off by default): a share of recipients answer after delivery, some with STOP,
//! through the same inbound path a provider's webhook takes. Who answers, and what, follows
//! from the message id, so the replies are planned again from the journal after a restart
//! and, carrying ids of their own, are stored once.

mod journal;
mod recent;

use super::{Accepted, InDoubt, InboundMessage, Provider, ProviderError, SendRequest, SentMatch};
use crate::config::MockSettings;
use crate::domain::{Channel, MessageStatus, Timestamp};
use crate::inbound::{Incoming, Receiver};
use crate::store::StatusUpdate;
use crate::workers::ReceiptSink;
use futures::future::BoxFuture;
use journal::{Entry, Journal};
use rand::Rng;
use recent::Recent;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "mock";

/// Receipts handed to Herald in one call, at most.
const RECEIPT_BATCH: usize = 2048;

/// Outcome rules by the last four digits of the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Unreachable,
    FlakyTwice,
    NoReceipt,
    NeverRead,
    Undelivered,
    Normal,
}

impl Rule {
    fn for_number(e164: &str) -> Rule {
        match e164.get(e164.len().saturating_sub(4)..) {
            Some("0000") => Rule::Unreachable,
            Some("0001") => Rule::FlakyTwice,
            Some("0002") => Rule::NoReceipt,
            Some("0003") => Rule::NeverRead,
            Some("0004") => Rule::Undelivered,
            _ => Rule::Normal,
        }
    }
}

/// The provider's id for a message: derived from the message id, so a replay is answered
/// with the first acceptance's id without remembering it.
fn reference(message_id: &str) -> String {
    let digest = Sha256::digest(message_id.as_bytes());
    format!("mock-{}", hex::encode(digest.get(..12).unwrap_or_default()))
}

/// A compact key for a message id in the mock's memory.
fn key(message_id: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    message_id.hash(&mut hasher);
    hasher.finish()
}

/// What the mock remembers: ids accepted within the idempotency window, and failed attempts
/// of numbers ending in 0001.
struct Memory {
    window_ms: i64,
    accepted: Recent,
    failures: HashMap<u64, (u32, i64)>,
    journal: Option<Journal>,
}

impl Memory {
    fn new(window_ms: i64) -> Memory {
        Memory {
            window_ms,
            accepted: Recent::new(window_ms),
            failures: HashMap::new(),
            journal: None,
        }
    }

    fn remember(&mut self, id: u64, at_ms: i64) {
        self.accepted.insert(id, at_ms);
        self.failures.remove(&id);
    }

    fn forget_before(&mut self, now_ms: i64) {
        self.accepted.forget_before(now_ms);
        let horizon = now_ms.saturating_sub(self.window_ms);
        if self.failures.len() > 10_000 {
            self.failures.retain(|_, (_, at)| *at >= horizon);
        }
    }

    fn write(&mut self, entry: &Entry<'_>) -> Result<(), ProviderError> {
        match self.journal.as_mut() {
            Some(journal) => journal.append(entry).map_err(|_| {
                transient(
                    "mock_journal",
                    "the mock network could not record the send",
                    None,
                )
            }),
            None => Ok(()),
        }
    }
}

/// A receipt the network will send, and when.
struct Planned {
    due_ms: i64,
    event: NetworkEvent,
}

/// A planned event in the network's timer: due first, then in the order planned.
struct Due {
    seq: u64,
    planned: Planned,
}

impl Due {
    fn key(&self) -> (i64, u64) {
        (self.planned.due_ms, self.seq)
    }
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// What the network sends Herald when it is due.
enum NetworkEvent {
    Receipt(StatusUpdate),
    Reply(Incoming),
}

pub struct MockProvider {
    settings: MockSettings,
    memory: Arc<Mutex<Memory>>,
    receipts: mpsc::UnboundedSender<Planned>,
}

/// What one call to `send` turned out to be.
enum Decision {
    Accepted,
    Refused(ProviderError),
    /// The call times out (the mock may have taken the message anyway: in doubt).
    TimedOut,
}

impl MockProvider {
    /// Starts the mock network: reads its journal back (if it keeps one), re-plans the
    /// receipts not yet delivered, and starts the timer that sends receipts into `sink`
    /// until `shutdown`.
    ///
    /// # Errors
    /// The journal cannot be read or opened.
    pub fn start(
        settings: MockSettings,
        journal: Option<PathBuf>,
        sink: ReceiptSink,
        replies: Receiver,
        shutdown: CancellationToken,
    ) -> std::io::Result<MockProvider> {
        let window_ms = i64::try_from(settings.idempotency_window_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let now = Timestamp::now().millis();
        let mut memory = Memory::new(window_ms);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut delivered_up_to = i64::MIN;
        if let Some(path) = journal {
            let (journal, past) = Journal::open(path, window_ms)?;
            let mut accepted = Vec::new();
            for entry in past {
                match entry {
                    journal::Past::Accepted {
                        message_id,
                        at_ms,
                        to,
                        channel,
                    } => accepted.push((message_id, at_ms, to, channel)),
                    journal::Past::Delivered { up_to_ms } => {
                        delivered_up_to = delivered_up_to.max(up_to_ms);
                    }
                }
            }
            for (message_id, at_ms, to, channel) in accepted {
                if at_ms >= now.saturating_sub(window_ms) {
                    memory.remember(key(&message_id), at_ms);
                }
                for planned in plan(&settings, &message_id, &to, channel, at_ms) {
                    // `>=`: a receipt planned in the same millisecond as the last delivered
                    // batch may not have been in it; sending it again is harmless (stale).
                    if planned.due_ms >= delivered_up_to {
                        let _ = tx.send(planned);
                    }
                }
            }
            memory.journal = Some(journal);
        }
        let memory = Arc::new(Mutex::new(memory));
        let network = Network {
            receipts: sink,
            replies,
        };
        tokio::spawn(send_receipts(rx, network, Arc::clone(&memory), shutdown));
        Ok(MockProvider {
            settings,
            memory,
            receipts: tx,
        })
    }

    fn decide(&self, request: &SendRequest<'_>, rule: Rule) -> Result<Decision, ProviderError> {
        let mut memory = self
            .memory
            .lock()
            .map_err(|_| transient("mock_poisoned", "the mock provider failed", None))?;
        let now = Timestamp::now().millis();
        memory.forget_before(now);
        let id = request.message_id.as_str();
        let k = key(id);
        let reference = reference(id);
        if memory.accepted.contains(k) {
            memory.write(&Entry::Replay {
                message_id: id,
                reference: &reference,
                at_ms: now,
            })?;
            return Ok(Decision::Accepted);
        }
        let refusal = self.refusal(&mut memory, k, rule, now);
        if let Some(error) = refusal {
            let (code, retry_after) = match &error {
                ProviderError::Transient {
                    code, retry_after, ..
                } => (code.as_str(), *retry_after),
                ProviderError::Permanent { code, .. } => (code.as_str(), None),
            };
            memory.write(&Entry::Refused {
                message_id: id,
                at_ms: now,
                code,
                retry_after_ms: retry_after.map_or(0, |d| d.as_millis()),
            })?;
            return Ok(Decision::Refused(error));
        }
        let mut rng = rand::rng();
        let timed_out = self.settings.timeout_rate > 0.0
            && rng.random_bool(self.settings.timeout_rate.clamp(0.0, 1.0));
        if timed_out && rng.random_bool(0.5) {
            memory.write(&Entry::Refused {
                message_id: id,
                at_ms: now,
                code: "timeout",
                retry_after_ms: 0,
            })?;
            return Ok(Decision::TimedOut);
        }
        memory.write(&Entry::Accepted {
            message_id: id,
            reference: &reference,
            at_ms: now,
            to: request.to,
            channel: request.channel,
        })?;
        memory.remember(k, now);
        drop(memory);
        for planned in plan(&self.settings, id, request.to, request.channel, now) {
            // The receiver lives as long as the runtime; a send failure means shutdown.
            let _ = self.receipts.send(planned);
        }
        if timed_out {
            return Ok(Decision::TimedOut);
        }
        Ok(Decision::Accepted)
    }

    /// Why this attempt is refused, if it is: the number's rule first, then the faults.
    fn refusal(&self, memory: &mut Memory, k: u64, rule: Rule, now: i64) -> Option<ProviderError> {
        match rule {
            Rule::Unreachable => {
                return Some(ProviderError::Permanent {
                    code: "unreachable".into(),
                    message: "the mock network cannot reach this number".into(),
                });
            }
            Rule::FlakyTwice => {
                let (failures, at) = memory.failures.entry(k).or_insert((0, now));
                if *failures < 2 {
                    *failures += 1;
                    *at = now;
                    return Some(transient(
                        "temporarily_unavailable",
                        "the mock network is temporarily unavailable for this number",
                        None,
                    ));
                }
            }
            _ => {}
        }
        let s = &self.settings;
        let mut rng = rand::rng();
        if s.failure_rate > 0.0 && rng.random_bool(s.failure_rate.clamp(0.0, 1.0)) {
            return Some(transient(
                "service_unavailable",
                "the mock network failed this attempt (failure_rate)",
                None,
            ));
        }
        if s.throttle_rate > 0.0 && rng.random_bool(s.throttle_rate.clamp(0.0, 1.0)) {
            return Some(transient(
                "too_many_requests",
                "the mock network throttled this attempt (429)",
                Some(Duration::from_secs(s.throttle_retry_after_seconds)),
            ));
        }
        None
    }
}

/// The receipts a message accepted at `at_ms` gets under the mock's rules.
fn plan(
    settings: &MockSettings,
    message_id: &str,
    to: &str,
    channel: Channel,
    at_ms: i64,
) -> Vec<Planned> {
    let deliver = i64::try_from(settings.deliver_after_ms).unwrap_or(i64::MAX);
    let read = i64::try_from(settings.read_after_ms).unwrap_or(i64::MAX);
    let accept = i64::try_from(settings.accept_delay_ms).unwrap_or(0);
    let delivered_at = at_ms.saturating_add(accept).saturating_add(deliver);
    let read_at = delivered_at.saturating_add(read);
    let reads = channel == Channel::Whatsapp || settings.sms_read_receipts;
    let statuses: &[(MessageStatus, i64)] = match Rule::for_number(to) {
        Rule::NoReceipt | Rule::Unreachable => &[],
        Rule::NeverRead => &[(MessageStatus::Delivered, delivered_at)],
        Rule::Undelivered => &[(MessageStatus::Undelivered, delivered_at)],
        Rule::Normal | Rule::FlakyTwice if reads => &[
            (MessageStatus::Delivered, delivered_at),
            (MessageStatus::Read, read_at),
        ],
        Rule::Normal | Rule::FlakyTwice => &[(MessageStatus::Delivered, delivered_at)],
    };
    let provider_message_id = reference(message_id);
    let delivered = statuses
        .iter()
        .any(|(status, _)| *status == MessageStatus::Delivered);
    let mut planned: Vec<Planned> = statuses
        .iter()
        .map(|(status, due_ms)| {
            let undelivered = *status == MessageStatus::Undelivered;
            Planned {
                due_ms: *due_ms,
                event: NetworkEvent::Receipt(StatusUpdate {
                    provider: NAME,
                    provider_message_id: provider_message_id.clone(),
                    status: *status,
                    at: Timestamp::from_millis(*due_ms),
                    error_code: undelivered.then(|| "undelivered".to_owned()),
                    error_message: undelivered
                        .then(|| "the handset did not take the message".to_owned()),
                }),
            }
        })
        .collect();
    if delivered && let Some(body) = reply(settings, message_id) {
        let due_ms =
            delivered_at.saturating_add(i64::try_from(settings.reply_after_ms).unwrap_or(i64::MAX));
        planned.push(Planned {
            due_ms,
            event: NetworkEvent::Reply(Incoming::from_provider(
                InboundMessage {
                    provider: NAME,
                    provider_message_id: format!("{provider_message_id}-reply"),
                    from: to.to_owned(),
                    to: String::new(),
                    body,
                    media_urls: Vec::new(),
                    received_at: Timestamp::from_millis(due_ms),
                },
                channel,
                None,
            )),
        });
    }
    planned
}

/// What the recipient of `message_id` answers, if anything: decided by the id's hash, so the
/// same message always gets the same answer (and a share of all messages the configured one).
fn reply(settings: &MockSettings, message_id: &str) -> Option<String> {
    if settings.reply_rate <= 0.0 {
        return None;
    }
    let h = key(message_id);
    let fraction = |bits: u64| (bits % 1_000_000) as f64 / 1_000_000.0;
    if fraction(h) >= settings.reply_rate {
        return None;
    }
    Some(if fraction(h >> 32) < settings.reply_stop_rate {
        "STOP".to_owned()
    } else {
        settings.reply_text.clone()
    })
}

/// From hand-over to the handset, with these settings.
pub fn typical_delivery(settings: &MockSettings) -> Duration {
    Duration::from_millis(
        settings
            .accept_delay_ms
            .saturating_add(settings.deliver_after_ms),
    )
}

fn transient(code: &str, message: &str, retry_after: Option<Duration>) -> ProviderError {
    ProviderError::Transient {
        code: code.into(),
        message: message.into(),
        retry_after,
    }
}

impl Provider for MockProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(
        &'a self,
        request: SendRequest<'a>,
    ) -> BoxFuture<'a, Result<Accepted, ProviderError>> {
        Box::pin(async move {
            let jitter = if self.settings.latency_jitter_ms > 0 {
                rand::rng().random_range(0..=self.settings.latency_jitter_ms)
            } else {
                0
            };
            let delay = self.settings.accept_delay_ms.saturating_add(jitter);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let rule = Rule::for_number(request.to);
            match self.decide(&request, rule)? {
                Decision::Accepted => Ok(Accepted {
                    provider_message_id: reference(request.message_id.as_str()),
                }),
                Decision::Refused(error) => Err(error),
                Decision::TimedOut => {
                    tokio::time::sleep(Duration::from_millis(self.settings.timeout_ms)).await;
                    Err(transient(
                        super::TIMEOUT,
                        "the mock network did not answer in time (timeout_rate)",
                        None,
                    ))
                }
            }
        })
    }

    fn default_sender(&self) -> &str {
        &self.settings.default_sender
    }

    fn find_sent<'a>(
        &'a self,
        request: SendRequest<'a>,
        attempt_started: Timestamp,
    ) -> BoxFuture<'a, InDoubt> {
        let answer = match self.memory.lock() {
            Err(_) => InDoubt::Failed(transient("mock_poisoned", "the mock provider failed", None)),
            Ok(mut memory) => {
                let now = Timestamp::now().millis();
                memory.forget_before(now);
                let id = request.message_id.as_str();
                if memory.accepted.contains(key(id)) {
                    InDoubt::Found(vec![SentMatch {
                        provider_message_id: reference(id),
                        // Its network sends the receipts, from the journal after a restart.
                        receipt: None,
                    }])
                } else if attempt_started.millis() < now.saturating_sub(memory.window_ms) {
                    InDoubt::CannotAsk
                } else {
                    InDoubt::NotFound
                }
            }
        };
        Box::pin(std::future::ready(answer))
    }

    fn sender_rate(&self, _sender: &str) -> Option<NonZeroU32> {
        NonZeroU32::new(self.settings.sender_per_second)
    }

    fn typical_delivery(&self) -> Option<Duration> {
        Some(typical_delivery(&self.settings))
    }
}

/// The network's side of receipts: holds each until it is due, then hands the due ones to
/// Herald in due order and waits until they are on disk, retrying (as a provider retries a
/// webhook) until they are. The journal then records how far delivery has come, so a restart
/// re-sends exactly what was still due. One timer for all of them: a heap ordered by due time.
async fn send_receipts(
    mut rx: mpsc::UnboundedReceiver<Planned>,
    network: Network,
    memory: Arc<Mutex<Memory>>,
    shutdown: CancellationToken,
) {
    // The events sit in the heap itself. A map from sequence to event beside it filled with
    // tombstones as receipts left, and hashbrown doubled it after each burst.
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next_due = heap.peek().map(|Reverse(due)| due.planned.due_ms);
        tokio::select! {
            received = rx.recv() => match received {
                Some(planned) => {
                    seq += 1;
                    heap.push(Reverse(Due { seq, planned }));
                }
                None => return,
            },
            () = sleep_until(next_due) => {
                let now = Timestamp::now();
                let mut batch = Vec::new();
                let mut replies = Vec::new();
                let mut up_to = i64::MIN;
                while heap.peek().is_some_and(|Reverse(due)| due.planned.due_ms <= now.millis())
                    && batch.len() + replies.len() < RECEIPT_BATCH
                {
                    let Some(Reverse(due)) = heap.pop() else { break };
                    match due.planned.event {
                        // A receipt is stamped when the network sends it, not when planned.
                        NetworkEvent::Receipt(mut update) => {
                            update.at = now;
                            batch.push(update);
                        }
                        NetworkEvent::Reply(reply) => replies.push(reply),
                    }
                    up_to = due.planned.due_ms;
                }
                if batch.is_empty() && replies.is_empty() {
                    continue;
                }
                if !batch.is_empty() && !deliver(&network.receipts, batch, &shutdown).await {
                    return;
                }
                if !replies.is_empty() && !reply_all(&network.replies, replies, &shutdown).await {
                    return;
                }
                if let Ok(mut memory) = memory.lock() {
                    // Losing this line only means re-sending receipts Herald already has.
                    let _ = memory.write(&Entry::Delivered { up_to_ms: up_to });
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Where the network's events go: receipts, and replies from handsets.
struct Network {
    receipts: ReceiptSink,
    replies: Receiver,
}

/// Hands the handsets' replies to Herald until they are stored; false when shut down first.
async fn reply_all(
    receiver: &Receiver,
    replies: Vec<Incoming>,
    shutdown: &CancellationToken,
) -> bool {
    let mut pause = Duration::from_millis(100);
    loop {
        match receiver.receive(replies.clone()).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(error = %e, replies = replies.len(), "the mock network could not deliver replies; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return false,
        }
        pause = pause.saturating_mul(2).min(Duration::from_secs(5));
    }
}

/// Hands `batch` to Herald until it is committed; false when shut down first.
async fn deliver(
    sink: &ReceiptSink,
    batch: Vec<StatusUpdate>,
    shutdown: &CancellationToken,
) -> bool {
    let mut pause = Duration::from_millis(100);
    loop {
        match sink.deliver(batch.clone()).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, receipts = batch.len(), "the mock network could not deliver receipts; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return false,
        }
        pause = pause.saturating_mul(2).min(Duration::from_secs(5));
    }
}

async fn sleep_until(due_ms: Option<i64>) {
    match due_ms {
        Some(due) => {
            let wait = due.saturating_sub(Timestamp::now().millis()).max(0);
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_the_last_four_digits() {
        assert_eq!(Rule::for_number("+14155550000"), Rule::Unreachable);
        assert_eq!(Rule::for_number("+14155550001"), Rule::FlakyTwice);
        assert_eq!(Rule::for_number("+14155550002"), Rule::NoReceipt);
        assert_eq!(Rule::for_number("+14155550003"), Rule::NeverRead);
        assert_eq!(Rule::for_number("+14155550004"), Rule::Undelivered);
        assert_eq!(Rule::for_number("+14155550005"), Rule::Normal);
        assert_eq!(Rule::for_number("+1"), Rule::Normal);
    }

    #[test]
    fn a_replay_is_answered_with_the_first_provider_id() {
        assert_eq!(reference("msg_A"), reference("msg_A"));
        assert_ne!(reference("msg_A"), reference("msg_B"));
    }
}
