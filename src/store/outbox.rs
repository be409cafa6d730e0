//! The webhook outbox's rules over each dialect's statements: claiming deliveries, recording
//! attempts, an endpoint's health and its disabling, re-sending and purging (see
//! `store::events` for what is stored). SQLite runs them in its writer's transaction,
//! PostgreSQL in one of its own; the statements are [`OutboxSql`], one query file each, and
//! rows come back as the `FromRow` types here, decoded the same way on both.

use crate::domain::{AccountId, Timestamp};
use crate::store::StoreResult;
use crate::store::delivery::json_array;
use crate::store::events::{
    AttemptOutcome, AttemptView, DeliveryJob, DeliveryView, EventKind, EventRecord, InboundDetail,
    NextStep, Target, TwilioCallback, WebhookEndpoint,
};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

#[derive(Clone)]
pub(crate) enum EventWrite {
    SetWebhook {
        account_id: AccountId,
        url: String,
    },
    DeleteWebhook {
        account_id: AccountId,
    },
    SetSecret {
        account_id: AccountId,
        secret: String,
    },
    Claim {
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        busy: Vec<String>,
    },
    Record {
        outcomes: Vec<AttemptOutcome>,
        cursor: Option<i64>,
        disable_after: Duration,
    },
    Redeliver {
        account_id: AccountId,
        delivery_id: i64,
        now: Timestamp,
    },
    Purge {
        before: Timestamp,
    },
}

pub(crate) enum EventWritten {
    Count(u64),
    /// `(delivery_id, attempt)` of each claimed delivery.
    Claimed(Vec<(i64, i64)>),
    /// Accounts whose webhooks were disabled.
    Disabled(Vec<String>),
}

impl EventWritten {
    pub(crate) fn count(&self) -> u64 {
        match self {
            EventWritten::Count(n) => *n,
            EventWritten::Claimed(c) => c.len() as u64,
            EventWritten::Disabled(d) => d.len() as u64,
        }
    }

    pub(crate) fn claimed(self) -> Vec<(i64, i64)> {
        match self {
            EventWritten::Claimed(c) => c,
            _ => Vec::new(),
        }
    }

    pub(crate) fn disabled(self) -> Vec<String> {
        match self {
            EventWritten::Disabled(d) => d,
            _ => Vec::new(),
        }
    }
}

/// The outbox's statements, run inside the caller's transaction.
pub(crate) trait OutboxSql: Send {
    fn set_webhook(
        &mut self,
        account_id: &str,
        url: String,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
    fn delete_webhook(
        &mut self,
        account_id: &str,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
    fn give_up_webhook_deliveries(
        &mut self,
        account_id: &str,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn set_webhook_secret(
        &mut self,
        account_id: &str,
        secret: String,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
    /// `busy`: a JSON array of accounts to skip. Answers (delivery_id, attempt) pairs.
    fn claim_webhook_deliveries(
        &mut self,
        lease_until: i64,
        now: i64,
        busy: String,
        limit: i64,
    ) -> impl Future<Output = sqlx::Result<Vec<(i64, i64)>>> + Send;
    fn redeliver_webhook(
        &mut self,
        account_id: &str,
        delivery_id: i64,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
    fn purge_events(&mut self, before: i64) -> impl Future<Output = sqlx::Result<u64>> + Send;
    /// `attempts`: a JSON array of {id, attempt, at, latency, status, error}.
    fn insert_webhook_attempts(
        &mut self,
        attempts: String,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// `delivered`: a JSON array of [id, attempt, at, latency, status], one per success.
    fn mark_webhooks_delivered(
        &mut self,
        delivered: String,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// `moves`: the failed attempts' objects with {state, due, finished}.
    fn finish_webhook_deliveries(
        &mut self,
        moves: String,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Clears `failing_since` of the accounts in `ok`, sets it for those in `failing`.
    fn webhook_endpoint_health(
        &mut self,
        ok: String,
        failing: String,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn disable_failing_webhooks(
        &mut self,
        failing: String,
        failing_before: i64,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<Vec<String>>> + Send;
    /// `rows`: a JSON array of [event_seq, account, created_at, state, attempts, due,
    /// finished, at, latency, status, error]. Answers (delivery_id, event_seq) of each.
    fn insert_fresh_deliveries(
        &mut self,
        rows: String,
    ) -> impl Future<Output = sqlx::Result<Vec<(i64, i64)>>> + Send;
    fn move_webhook_cursor(&mut self, to: i64) -> impl Future<Output = sqlx::Result<()>> + Send;
}

pub(crate) async fn run(conn: &mut impl OutboxSql, write: EventWrite) -> StoreResult<EventWritten> {
    let now = Timestamp::now();
    Ok(match write {
        EventWrite::SetWebhook { account_id, url } => EventWritten::Count(
            conn.set_webhook(account_id.as_str(), url, now.millis())
                .await?,
        ),
        EventWrite::DeleteWebhook { account_id } => {
            let done = conn
                .delete_webhook(account_id.as_str(), now.millis())
                .await?;
            conn.give_up_webhook_deliveries(account_id.as_str(), now.millis())
                .await?;
            EventWritten::Count(done)
        }
        EventWrite::SetSecret { account_id, secret } => EventWritten::Count(
            conn.set_webhook_secret(account_id.as_str(), secret, now.millis())
                .await?,
        ),
        EventWrite::Claim {
            now,
            lease_until,
            limit,
            busy,
        } => EventWritten::Claimed(
            conn.claim_webhook_deliveries(
                lease_until.millis(),
                now.millis(),
                json_array(&busy),
                i64::try_from(limit).unwrap_or(i64::MAX),
            )
            .await?,
        ),
        EventWrite::Record {
            outcomes,
            cursor,
            disable_after,
        } => {
            let (fresh, claimed): (Vec<AttemptOutcome>, Vec<AttemptOutcome>) =
                outcomes.into_iter().partition(|o| o.delivery_id.is_none());
            record_fresh(conn, &fresh).await?;
            if let Some(cursor) = cursor {
                conn.move_webhook_cursor(cursor).await?;
            }
            record(conn, &claimed).await?;
            EventWritten::Disabled(health(conn, &claimed, &fresh, disable_after, now).await?)
        }
        EventWrite::Redeliver {
            account_id,
            delivery_id,
            now,
        } => EventWritten::Count(
            conn.redeliver_webhook(account_id.as_str(), delivery_id, now.millis())
                .await?,
        ),
        EventWrite::Purge { before } => {
            EventWritten::Count(conn.purge_events(before.millis()).await?)
        }
    })
}

/// The attempt's latency as stored, in whole milliseconds.
fn latency_ms(o: &AttemptOutcome) -> i64 {
    i64::try_from(o.latency.as_millis()).unwrap_or(i64::MAX)
}

/// A failed attempt's row (`insert_webhook_attempts.sql`), of delivery `id`.
fn attempt_json(id: i64, o: &AttemptOutcome) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "attempt": o.attempt,
        "at": o.at.millis(),
        "latency": latency_ms(o),
        "status": o.response_status,
        "error": o.error,
    })
}

/// Writes the rows of deliveries read from the event log, each finished or queued as its
/// outcome says (attempt 0: not tried, its account's endpoint was full), and the rows of
/// their failed attempts.
async fn record_fresh(conn: &mut impl OutboxSql, outcomes: &[AttemptOutcome]) -> StoreResult<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let tried = o.attempt > 0;
            let (state, due, finished) = match o.next {
                NextStep::Delivered => ("delivered", o.at.millis(), Some(o.at.millis())),
                NextStep::RetryAt(t) => ("pending", t.millis(), None),
                NextStep::GiveUp => ("failed", o.at.millis(), Some(o.at.millis())),
            };
            serde_json::json!([
                o.event_seq,
                o.account_id.as_str(),
                o.created_at.millis(),
                state,
                o.attempt,
                due,
                finished,
                tried.then(|| o.at.millis()),
                tried.then(|| latency_ms(o)),
                o.response_status,
                o.error,
            ])
        })
        .collect();
    let ids: HashMap<i64, i64> = conn
        .insert_fresh_deliveries(json_array(&rows))
        .await?
        .into_iter()
        .map(|(delivery_id, seq)| (seq, delivery_id))
        .collect();
    let attempts: Vec<serde_json::Value> = outcomes
        .iter()
        .filter(|o| o.attempt > 0 && o.next != NextStep::Delivered)
        .filter_map(|o| ids.get(&o.event_seq).map(|id| attempt_json(*id, o)))
        .collect();
    if !attempts.is_empty() {
        conn.insert_webhook_attempts(json_array(&attempts)).await?;
    }
    Ok(())
}

/// An outcome with the id of the row its delivery has.
type Claimed<'a> = (i64, &'a AttemptOutcome);

/// Records attempts at deliveries that have rows (claimed).
async fn record(conn: &mut impl OutboxSql, outcomes: &[AttemptOutcome]) -> StoreResult<()> {
    let claimed: Vec<Claimed<'_>> = outcomes
        .iter()
        .filter_map(|o| o.delivery_id.map(|id| (id, o)))
        .collect();
    if claimed.is_empty() {
        return Ok(());
    }
    let attempt = |(id, o): &Claimed<'_>| attempt_json(*id, o);
    // A success (nearly every attempt) is marked by the lean statement and gets no attempt
    // row; a failure gets its row and moves to a retry or to giving up.
    let (delivered, failed): (Vec<Claimed<'_>>, Vec<Claimed<'_>>) = claimed
        .into_iter()
        .partition(|(_, o)| o.next == NextStep::Delivered);
    if !delivered.is_empty() {
        let rows: Vec<[i64; 5]> = delivered
            .iter()
            .map(|(id, o)| {
                [
                    *id,
                    o.attempt,
                    o.at.millis(),
                    latency_ms(o),
                    o.response_status.map_or(0, i64::from),
                ]
            })
            .collect();
        conn.mark_webhooks_delivered(json_array(&rows)).await?;
    }
    if !failed.is_empty() {
        let attempts: Vec<serde_json::Value> = failed.iter().map(attempt).collect();
        let moves: Vec<serde_json::Value> = failed
            .iter()
            .map(|failure| {
                let o = failure.1;
                let (state, due, finished) = match o.next {
                    NextStep::RetryAt(t) => ("pending", Some(t.millis()), None),
                    NextStep::GiveUp | NextStep::Delivered => ("failed", None, Some(o.at.millis())),
                };
                let mut step = attempt(failure);
                if let Some(fields) = step.as_object_mut() {
                    fields.insert("state".into(), state.into());
                    fields.insert("due".into(), due.into());
                    fields.insert("finished".into(), finished.into());
                }
                step
            })
            .collect();
        conn.insert_webhook_attempts(json_array(&attempts)).await?;
        conn.finish_webhook_deliveries(json_array(&moves)).await?;
    }
    Ok(())
}

/// The health of each account's webhook after these attempts: any success in this round
/// clears it; an endpoint failing for longer than `disable_after` is disabled.
async fn health(
    conn: &mut impl OutboxSql,
    claimed: &[AttemptOutcome],
    fresh: &[AttemptOutcome],
    disable_after: Duration,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    let mut worked: HashMap<&str, bool> = HashMap::new();
    let tried = claimed.iter().chain(fresh).filter(|o| o.attempt > 0);
    for o in tried.filter(|o| o.target == Target::Webhook) {
        *worked.entry(o.account_id.as_str()).or_default() |= o.next == NextStep::Delivered;
    }
    if worked.is_empty() {
        return Ok(Vec::new());
    }
    let ok: Vec<&str> = worked
        .iter()
        .filter(|(_, w)| **w)
        .map(|(a, _)| *a)
        .collect();
    let failing: Vec<&str> = worked
        .iter()
        .filter(|(_, w)| !**w)
        .map(|(a, _)| *a)
        .collect();
    conn.webhook_endpoint_health(json_array(&ok), json_array(&failing), now.millis())
        .await?;
    if failing.is_empty() {
        return Ok(Vec::new());
    }
    let disabled = conn
        .disable_failing_webhooks(
            json_array(&failing),
            now.minus(disable_after).millis(),
            now.millis(),
        )
        .await?;
    for account in &disabled {
        conn.give_up_webhook_deliveries(account, now.millis())
            .await?;
    }
    Ok(disabled)
}

/// An event with what its payload shows (`event_select.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    event_seq: i64,
    account_id: String,
    kind: String,
    message_id: String,
    status: String,
    previous_status: Option<String>,
    at: i64,
    channel: Option<String>,
    campaign_id: Option<String>,
    phone_number: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    metadata: Option<String>,
    to_number: Option<String>,
    inbound_body: Option<String>,
    media_urls: Option<String>,
    thread_id: Option<String>,
    keyword: Option<String>,
    in_reply_to: Option<String>,
}

impl EventRow {
    pub(crate) fn into_record(self) -> EventRecord {
        let kind = EventKind::parse(&self.kind).unwrap_or(EventKind::Status);
        let inbound = match kind {
            EventKind::Inbound => Some(InboundDetail {
                to: self.to_number,
                body: self.inbound_body.unwrap_or_default(),
                media_urls: self
                    .media_urls
                    .and_then(|m| serde_json::from_str(&m).ok())
                    .unwrap_or_default(),
                thread_id: self.thread_id,
                keyword: self.keyword,
                in_reply_to: self.in_reply_to,
            }),
            EventKind::Status => None,
        };
        EventRecord {
            seq: self.event_seq,
            account_id: AccountId::from_stored(self.account_id),
            kind,
            message_id: self.message_id,
            status: self.status,
            previous_status: self.previous_status,
            at: Timestamp::from_millis(self.at),
            channel: self.channel,
            campaign_id: self.campaign_id,
            phone_number: self.phone_number,
            error_code: self.error_code,
            error_message: self.error_message,
            metadata: self.metadata,
            inbound,
        }
    }
}

/// The account's endpoint (`load_webhook.sql`); `webhook_enabled` is 0/1 on both dialects.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WebhookRow {
    webhook_url: Option<String>,
    webhook_secret: String,
    webhook_enabled: i64,
    webhook_failing_since: Option<i64>,
    webhook_disabled_at: Option<i64>,
}

impl WebhookRow {
    pub(crate) fn into_endpoint(self) -> WebhookEndpoint {
        WebhookEndpoint {
            url: self.webhook_url,
            secret: self.webhook_secret,
            enabled: self.webhook_enabled != 0,
            failing_since: self.webhook_failing_since.map(Timestamp::from_millis),
            disabled_at: self.webhook_disabled_at.map(Timestamp::from_millis),
        }
    }
}

/// A claimed delivery with where it goes and the event it carries
/// (`claimed_deliveries.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ClaimedRow {
    /// NULL: an event read from the log (`fresh_webhook_events.sql`).
    delivery_id: Option<i64>,
    attempt: i64,
    target: String,
    created_at: i64,
    url: Option<String>,
    webhook_secret: String,
    sender_id: Option<String>,
    twilio_callback_signer: Option<String>,
    #[sqlx(flatten)]
    event: EventRow,
}

impl ClaimedRow {
    pub(crate) fn into_job(self) -> DeliveryJob {
        let target = Target::parse(&self.target);
        let twilio = match (target, self.twilio_callback_signer) {
            (Target::StatusCallback, Some(sealed_signer)) => Some(TwilioCallback {
                sealed_signer,
                from: self.sender_id,
            }),
            _ => None,
        };
        DeliveryJob {
            delivery_id: self.delivery_id,
            attempt: self.attempt,
            target,
            url: self.url,
            secret: self.webhook_secret,
            twilio,
            created_at: Timestamp::from_millis(self.created_at),
            event: self.event.into_record(),
        }
    }
}

/// A delivery as the account sees it (`list_webhook_deliveries.sql`,
/// `load_webhook_delivery.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    delivery_id: i64,
    event_seq: i64,
    kind: String,
    message_id: String,
    target: String,
    state: String,
    attempts: i64,
    due_at: i64,
    created_at: i64,
    finished_at: Option<i64>,
    last_attempt_at: Option<i64>,
    last_latency_ms: Option<i64>,
    last_response_status: Option<i64>,
    last_error: Option<String>,
}

impl DeliveryRow {
    pub(crate) fn view(&self) -> DeliveryView {
        DeliveryView {
            delivery_id: self.delivery_id,
            event_seq: self.event_seq,
            event: self.kind.clone(),
            message_id: self.message_id.clone(),
            target: Target::parse(&self.target),
            next_attempt_at: (self.state == "pending").then(|| Timestamp::from_millis(self.due_at)),
            state: self.state.clone(),
            attempts: self.attempts,
            created_at: Timestamp::from_millis(self.created_at),
            finished_at: self.finished_at.map(Timestamp::from_millis),
        }
    }

    /// The view with its attempts: the failed ones have rows; a success is kept on the
    /// delivery's row only.
    pub(crate) fn with_attempts(self, rows: Vec<AttemptRow>) -> (DeliveryView, Vec<AttemptView>) {
        let view = self.view();
        let mut attempts: Vec<AttemptView> = rows
            .into_iter()
            .map(|row| AttemptView {
                attempt: row.attempt,
                at: Timestamp::from_millis(row.at),
                latency_ms: row.latency_ms,
                response_status: row.response_status,
                error: row.error,
            })
            .collect();
        if let (Some(at), "delivered") = (self.last_attempt_at, view.state.as_str()) {
            attempts.push(AttemptView {
                attempt: view.attempts,
                at: Timestamp::from_millis(at),
                latency_ms: self.last_latency_ms.unwrap_or(0),
                response_status: self.last_response_status,
                error: self.last_error,
            });
        }
        (view, attempts)
    }
}

/// One failed attempt (`load_webhook_attempts.sql`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AttemptRow {
    attempt: i64,
    at: i64,
    latency_ms: i64,
    response_status: Option<i64>,
    error: Option<String>,
}
