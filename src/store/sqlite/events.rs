//! The SQL of events and webhook deliveries (see `store::events`).

use crate::domain::{AccountId, Timestamp};
use crate::store::StoreResult;
use crate::store::events::{
    AttemptOutcome, AttemptView, DeliveryJob, DeliveryView, EventKind, EventRecord, InboundDetail,
    NextStep, Target, TwilioCallback, WebhookEndpoint,
};
use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

pub(in crate::store) enum EventWrite {
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

pub(in crate::store) enum EventWritten {
    Count(u64),
    /// `(delivery_id, attempt)` of each claimed delivery.
    Claimed(Vec<(i64, i64)>),
    /// Accounts whose webhooks were disabled.
    Disabled(Vec<String>),
}

impl EventWritten {
    pub(in crate::store) fn count(&self) -> u64 {
        match self {
            EventWritten::Count(n) => *n,
            EventWritten::Claimed(c) => c.len() as u64,
            EventWritten::Disabled(d) => d.len() as u64,
        }
    }

    pub(in crate::store) fn claimed(self) -> Vec<(i64, i64)> {
        match self {
            EventWritten::Claimed(c) => c,
            _ => Vec::new(),
        }
    }

    pub(in crate::store) fn disabled(self) -> Vec<String> {
        match self {
            EventWritten::Disabled(d) => d,
            _ => Vec::new(),
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub(super) async fn run(
    conn: &mut SqliteConnection,
    write: EventWrite,
) -> StoreResult<EventWritten> {
    let now = Timestamp::now();
    let written = match write {
        EventWrite::SetWebhook { account_id, url } => {
            let done = sqlx::query(include_str!("queries/set_webhook.sql"))
                .bind(account_id.as_str())
                .bind(url)
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            EventWritten::Count(done.rows_affected())
        }
        EventWrite::DeleteWebhook { account_id } => {
            let done = sqlx::query(include_str!("queries/delete_webhook.sql"))
                .bind(account_id.as_str())
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            sqlx::query(include_str!("queries/give_up_webhook_deliveries.sql"))
                .bind(account_id.as_str())
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            EventWritten::Count(done.rows_affected())
        }
        EventWrite::SetSecret { account_id, secret } => {
            let done = sqlx::query(include_str!("queries/set_webhook_secret.sql"))
                .bind(account_id.as_str())
                .bind(secret)
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            EventWritten::Count(done.rows_affected())
        }
        EventWrite::Claim {
            now,
            lease_until,
            limit,
            busy,
        } => {
            let rows = sqlx::query(include_str!("queries/claim_webhook_deliveries.sql"))
                .bind(lease_until.millis())
                .bind(now.millis())
                .bind(json(&busy))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *conn)
                .await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                claimed.push((row.try_get("delivery_id")?, row.try_get("attempts")?));
            }
            EventWritten::Claimed(claimed)
        }
        EventWrite::Record {
            outcomes,
            disable_after,
        } => EventWritten::Disabled(record(conn, &outcomes, disable_after, now).await?),
        EventWrite::Redeliver {
            account_id,
            delivery_id,
            now,
        } => {
            let done = sqlx::query(include_str!("queries/redeliver_webhook.sql"))
                .bind(account_id.as_str())
                .bind(delivery_id)
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            EventWritten::Count(done.rows_affected())
        }
        EventWrite::Purge { before } => {
            let done = sqlx::query(include_str!("queries/purge_events.sql"))
                .bind(before.millis())
                .execute(&mut *conn)
                .await?;
            EventWritten::Count(done.rows_affected())
        }
    };
    Ok(written)
}

async fn record(
    conn: &mut SqliteConnection,
    outcomes: &[AttemptOutcome],
    disable_after: Duration,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let attempt = |o: &AttemptOutcome| {
        serde_json::json!({
            "id": o.delivery_id,
            "attempt": o.attempt,
            "at": o.at.millis(),
            "latency": i64::try_from(o.latency.as_millis()).unwrap_or(i64::MAX),
            "status": o.response_status,
            "error": o.error,
        })
    };
    // Only the attempts that failed get a row; every attempt, the last on the delivery.
    let failed: Vec<serde_json::Value> = outcomes
        .iter()
        .filter(|o| o.next != NextStep::Delivered)
        .map(attempt)
        .collect();
    let moves: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let (state, due, finished) = match o.next {
                NextStep::Delivered => ("delivered", None, Some(o.at.millis())),
                NextStep::GiveUp => ("failed", None, Some(o.at.millis())),
                NextStep::RetryAt(t) => ("pending", Some(t.millis()), None),
            };
            let mut step = attempt(o);
            if let Some(fields) = step.as_object_mut() {
                fields.insert("state".into(), state.into());
                fields.insert("due".into(), due.into());
                fields.insert("finished".into(), finished.into());
            }
            step
        })
        .collect();
    if !failed.is_empty() {
        sqlx::query(include_str!("queries/insert_webhook_attempts.sql"))
            .bind(json(&failed))
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(include_str!("queries/finish_webhook_deliveries.sql"))
        .bind(json(&moves))
        .execute(&mut *conn)
        .await?;

    // The health of each account's webhook: any success in this round clears it.
    let mut worked: HashMap<&str, bool> = HashMap::new();
    for o in outcomes.iter().filter(|o| o.target == Target::Webhook) {
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
    sqlx::query(include_str!("queries/webhook_endpoint_health.sql"))
        .bind(json(&ok))
        .bind(json(&failing))
        .bind(now.millis())
        .execute(&mut *conn)
        .await?;
    if failing.is_empty() {
        return Ok(Vec::new());
    }
    let disabled: Vec<String> =
        sqlx::query_scalar(include_str!("queries/disable_failing_webhooks.sql"))
            .bind(json(&failing))
            .bind(now.minus(disable_after).millis())
            .bind(now.millis())
            .fetch_all(&mut *conn)
            .await?;
    for account in &disabled {
        sqlx::query(include_str!("queries/give_up_webhook_deliveries.sql"))
            .bind(account)
            .bind(now.millis())
            .execute(&mut *conn)
            .await?;
    }
    Ok(disabled)
}

fn event_record(row: &SqliteRow) -> Result<EventRecord, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let kind = EventKind::parse(&kind).unwrap_or(EventKind::Status);
    let inbound = match kind {
        EventKind::Inbound => {
            let media: Option<String> = row.try_get("media_urls")?;
            Some(InboundDetail {
                to: row.try_get("to_number")?,
                body: row
                    .try_get::<Option<String>, _>("inbound_body")?
                    .unwrap_or_default(),
                media_urls: media
                    .and_then(|m| serde_json::from_str(&m).ok())
                    .unwrap_or_default(),
                thread_id: row.try_get("thread_id")?,
                keyword: row.try_get("keyword")?,
                in_reply_to: row.try_get("in_reply_to")?,
            })
        }
        EventKind::Status => None,
    };
    Ok(EventRecord {
        seq: row.try_get("event_seq")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        kind,
        message_id: row.try_get("message_id")?,
        status: row.try_get("status")?,
        previous_status: row.try_get("previous_status")?,
        at: Timestamp::from_millis(row.try_get("at")?),
        channel: row.try_get("channel")?,
        campaign_id: row.try_get("campaign_id")?,
        phone_number: row.try_get("phone_number")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        metadata: row.try_get("metadata")?,
        inbound,
    })
}

pub(in crate::store) async fn events_after(
    pool: &SqlitePool,
    after: i64,
    account_id: Option<&AccountId>,
    limit: usize,
) -> StoreResult<Vec<EventRecord>> {
    let rows = sqlx::query(concat!(
        include_str!("queries/event_select.sql"),
        "WHERE e.event_seq > ?1 AND (?2 IS NULL OR e.account_id = ?2)\n",
        "ORDER BY e.event_seq LIMIT ?3"
    ))
    .bind(after)
    .bind(account_id.map(AccountId::as_str))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(event_record).collect::<Result<_, _>>()?)
}

pub(in crate::store) async fn last_event_seq(pool: &SqlitePool) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar(include_str!("queries/last_event_seq.sql"))
            .fetch_one(pool)
            .await?,
    )
}

pub(in crate::store) async fn webhook(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<WebhookEndpoint> {
    let row = sqlx::query(include_str!("queries/load_webhook.sql"))
        .bind(account_id.as_str())
        .fetch_one(pool)
        .await?;
    let at = |name: &str| -> Result<Option<Timestamp>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(name)?
            .map(Timestamp::from_millis))
    };
    Ok(WebhookEndpoint {
        url: row.try_get("webhook_url")?,
        secret: row.try_get("webhook_secret")?,
        enabled: row.try_get("webhook_enabled")?,
        failing_since: at("webhook_failing_since")?,
        disabled_at: at("webhook_disabled_at")?,
    })
}

pub(in crate::store) async fn work_due(pool: &SqlitePool, now: Timestamp) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar(include_str!("queries/webhook_work_due.sql"))
            .bind(now.millis())
            .fetch_one(pool)
            .await?,
    )
}

pub(in crate::store) async fn delivery_jobs(
    pool: &SqlitePool,
    claimed: &[(i64, i64)],
) -> StoreResult<Vec<DeliveryJob>> {
    let mut conn = pool.acquire().await?;
    let targets = sqlx::query(include_str!("queries/webhook_delivery_targets.sql"))
        .bind(json(&claimed))
        .fetch_all(&mut *conn)
        .await?;
    let seqs: BTreeSet<i64> = targets
        .iter()
        .map(|r| r.try_get("event_seq"))
        .collect::<Result<_, _>>()?;
    let seqs: Vec<i64> = seqs.into_iter().collect();
    let events = sqlx::query(concat!(
        include_str!("queries/event_select.sql"),
        "WHERE e.event_seq IN (SELECT value FROM json_each(?1))"
    ))
    .bind(json(&seqs))
    .fetch_all(&mut *conn)
    .await?;
    let mut by_seq = HashMap::with_capacity(events.len());
    for row in &events {
        let event = event_record(row)?;
        by_seq.insert(event.seq, event);
    }
    let mut jobs = Vec::with_capacity(targets.len());
    for row in targets {
        let seq: i64 = row.try_get("event_seq")?;
        let Some(event) = by_seq.get(&seq) else {
            continue;
        };
        let target: String = row.try_get("target")?;
        let target = Target::parse(&target);
        let signer: Option<String> = row.try_get("twilio_callback_signer")?;
        let twilio = match (target, signer) {
            (Target::StatusCallback, Some(sealed_signer)) => Some(TwilioCallback {
                sealed_signer,
                from: row.try_get("sender_id")?,
            }),
            _ => None,
        };
        jobs.push(DeliveryJob {
            delivery_id: row.try_get("delivery_id")?,
            attempt: row.try_get("attempt")?,
            target,
            url: row.try_get("url")?,
            secret: row.try_get("webhook_secret")?,
            twilio,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            event: event.clone(),
        });
    }
    Ok(jobs)
}

fn delivery_view(row: &SqliteRow) -> Result<DeliveryView, sqlx::Error> {
    let target: String = row.try_get("target")?;
    let state: String = row.try_get("state")?;
    let due: i64 = row.try_get("due_at")?;
    Ok(DeliveryView {
        delivery_id: row.try_get("delivery_id")?,
        event_seq: row.try_get("event_seq")?,
        event: row.try_get("kind")?,
        message_id: row.try_get("message_id")?,
        target: Target::parse(&target),
        next_attempt_at: (state == "pending").then(|| Timestamp::from_millis(due)),
        state,
        attempts: row.try_get("attempts")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(Timestamp::from_millis),
    })
}

pub(in crate::store) async fn deliveries(
    pool: &SqlitePool,
    account_id: &AccountId,
    state: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> StoreResult<Vec<DeliveryView>> {
    let rows = sqlx::query(include_str!("queries/list_webhook_deliveries.sql"))
        .bind(account_id.as_str())
        .bind(state)
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(delivery_view).collect::<Result<_, _>>()?)
}

/// One delivery and its attempts, in one read transaction (one snapshot).
pub(in crate::store) async fn delivery(
    pool: &SqlitePool,
    account_id: &AccountId,
    delivery_id: i64,
) -> StoreResult<Option<(DeliveryView, Vec<AttemptView>)>> {
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query(include_str!("queries/load_webhook_delivery.sql"))
        .bind(account_id.as_str())
        .bind(delivery_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let view = delivery_view(&row)?;
    let rows = sqlx::query(include_str!("queries/load_webhook_attempts.sql"))
        .bind(delivery_id)
        .fetch_all(&mut *tx)
        .await?;
    let mut attempts = Vec::with_capacity(rows.len() + 1);
    for row in rows {
        attempts.push(AttemptView {
            attempt: row.try_get("attempt")?,
            at: Timestamp::from_millis(row.try_get("at")?),
            latency_ms: row.try_get("latency_ms")?,
            response_status: row.try_get("response_status")?,
            error: row.try_get("error")?,
        });
    }
    tx.commit().await?;
    // A success is kept on the delivery's row only.
    let last_at: Option<i64> = row.try_get("last_attempt_at")?;
    if let (Some(at), "delivered") = (last_at, view.state.as_str()) {
        attempts.push(AttemptView {
            attempt: view.attempts,
            at: Timestamp::from_millis(at),
            latency_ms: row
                .try_get::<Option<i64>, _>("last_latency_ms")?
                .unwrap_or(0),
            response_status: row.try_get("last_response_status")?,
            error: row.try_get("last_error")?,
        });
    }
    Ok(Some((view, attempts)))
}
