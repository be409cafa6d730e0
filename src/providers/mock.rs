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
//! Like a real provider with idempotency tokens, it accepts a message id once: sending it
//! again returns the first acceptance. With `handover_log` set, every acceptance is appended
//! to that file (and read back at start), so tests can prove what was handed over, and a
//! replay after a crash is still recognized.

use super::{Accepted, Provider, ProviderError, ReceiptSink, SendRequest};
use crate::config::MockSettings;
use crate::domain::{Channel, MessageStatus, Timestamp};
use crate::store::StatusUpdate;
use futures::future::BoxFuture;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub const NAME: &str = "mock";

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

struct Ledger {
    /// message id → provider id, for every message accepted.
    accepted: HashMap<String, String>,
    /// message id → failed attempts so far (numbers ending in 0001).
    failures: HashMap<String, u32>,
    log: Option<std::fs::File>,
}

pub struct MockProvider {
    settings: MockSettings,
    ledger: Mutex<Ledger>,
    receipts: mpsc::UnboundedSender<(Instant, StatusUpdate)>,
}

impl MockProvider {
    /// Starts the mock and its receipt timer, which feeds `sink`.
    ///
    /// # Errors
    /// The hand-over log cannot be opened or read.
    pub fn start(settings: MockSettings, sink: ReceiptSink) -> std::io::Result<MockProvider> {
        let mut accepted = HashMap::new();
        let log = if settings.handover_log.is_empty() {
            None
        } else {
            if let Ok(text) = std::fs::read_to_string(&settings.handover_log) {
                for line in text.lines() {
                    let mut fields = line.split(' ');
                    if let (Some(id), Some(reference)) = (fields.next(), fields.next()) {
                        accepted.insert(id.to_owned(), reference.to_owned());
                    }
                }
            }
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&settings.handover_log)?,
            )
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(deliver_receipts(rx, sink));
        Ok(MockProvider {
            settings,
            ledger: Mutex::new(Ledger {
                accepted,
                failures: HashMap::new(),
                log,
            }),
            receipts: tx,
        })
    }

    /// Decides the outcome of one hand-over; `Ok(None)` means "already accepted before".
    fn hand_over(&self, request: &SendRequest<'_>, rule: Rule) -> Result<Accepted, ProviderError> {
        let mut ledger = self
            .ledger
            .lock()
            .map_err(|_| transient("mock_poisoned", "the mock provider failed"))?;
        let id = request.message_id.as_str();
        if let Some(reference) = ledger.accepted.get(id) {
            return Ok(Accepted {
                provider_message_id: reference.clone(),
            });
        }
        match rule {
            Rule::Unreachable => {
                return Err(ProviderError::Permanent {
                    code: "unreachable".into(),
                    message: "the mock network cannot reach this number".into(),
                });
            }
            Rule::FlakyTwice => {
                let failures = ledger.failures.entry(id.to_owned()).or_insert(0);
                if *failures < 2 {
                    *failures += 1;
                    return Err(transient(
                        "temporarily_unavailable",
                        "the mock network is temporarily unavailable for this number",
                    ));
                }
            }
            _ => {}
        }
        let reference = format!("mock-{}", ulid::Ulid::new());
        if let Some(log) = ledger.log.as_mut() {
            // One write per line with O_APPEND: survives kill -9 of this process.
            let line = format!("{id} {reference} {}\n", Timestamp::now().millis());
            log.write_all(line.as_bytes()).map_err(|_| {
                transient("mock_log", "the mock provider could not record the send")
            })?;
        }
        ledger.accepted.insert(id.to_owned(), reference.clone());
        Ok(Accepted {
            provider_message_id: reference,
        })
    }

    fn schedule_receipts(&self, reference: &str, rule: Rule, channel: Channel) {
        let delivered_at = Instant::now() + Duration::from_millis(self.settings.deliver_after_ms);
        let read_at = delivered_at + Duration::from_millis(self.settings.read_after_ms);
        let reads = channel == Channel::Whatsapp || self.settings.sms_read_receipts;
        let plan: &[(MessageStatus, Instant)] = match rule {
            Rule::NoReceipt | Rule::Unreachable => &[],
            Rule::NeverRead => &[(MessageStatus::Delivered, delivered_at)],
            Rule::Undelivered => &[(MessageStatus::Undelivered, delivered_at)],
            Rule::Normal | Rule::FlakyTwice if reads => &[
                (MessageStatus::Delivered, delivered_at),
                (MessageStatus::Read, read_at),
            ],
            Rule::Normal | Rule::FlakyTwice => &[(MessageStatus::Delivered, delivered_at)],
        };
        for (status, due) in plan {
            let undelivered = *status == MessageStatus::Undelivered;
            let update = StatusUpdate {
                provider: NAME,
                provider_message_id: reference.to_owned(),
                status: *status,
                at: Timestamp::now(),
                error_code: undelivered.then(|| "undelivered".to_owned()),
                error_message: undelivered
                    .then(|| "the handset did not take the message".to_owned()),
            };
            // The receiver lives as long as the runtime; a send failure means shutdown.
            let _ = self.receipts.send((*due, update));
        }
    }
}

/// From hand-over to the handset, with these settings.
pub fn typical_delivery(settings: &MockSettings) -> Duration {
    Duration::from_millis(
        settings
            .accept_delay_ms
            .saturating_add(settings.deliver_after_ms),
    )
}

fn transient(code: &str, message: &str) -> ProviderError {
    ProviderError::Transient {
        code: code.into(),
        message: message.into(),
        retry_after: None,
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
            if self.settings.accept_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.settings.accept_delay_ms)).await;
            }
            let rule = Rule::for_number(request.to);
            let accepted = self.hand_over(&request, rule)?;
            self.schedule_receipts(&accepted.provider_message_id, rule, request.channel);
            Ok(accepted)
        })
    }

    fn default_sender(&self) -> &str {
        &self.settings.default_sender
    }

    fn sender_rate(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.settings.sender_per_second)
    }

    fn typical_delivery(&self) -> Option<Duration> {
        Some(typical_delivery(&self.settings))
    }
}

/// Holds receipts until they are due, then hands them to the sink. One timer for all of
/// them: a heap ordered by due time, instead of a sleeping task per message.
async fn deliver_receipts(
    mut rx: mpsc::UnboundedReceiver<(Instant, StatusUpdate)>,
    sink: ReceiptSink,
) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut waiting: HashMap<u64, StatusUpdate> = HashMap::new();
    let mut seq = 0u64;
    loop {
        let next_due = heap.peek().map(|Reverse((due, _))| *due);
        tokio::select! {
            received = rx.recv() => match received {
                Some((due, update)) => {
                    seq += 1;
                    heap.push(Reverse((due, seq)));
                    waiting.insert(seq, update);
                }
                None => return,
            },
            () = sleep_until(next_due) => {
                let now = Instant::now();
                while let Some(Reverse((due, id))) = heap.peek().copied() {
                    if due > now {
                        break;
                    }
                    heap.pop();
                    let Some(mut update) = waiting.remove(&id) else { continue };
                    // A receipt is stamped when the network "sends" it, not when planned.
                    update.at = Timestamp::now();
                    if sink.send(update).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
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
}
