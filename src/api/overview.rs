//! `GET /api/messaging/overview`: the account at a glance, for the dashboard's first page.
//! Everything comes from one read of the status tallies (a few hundred rows), so it answers
//! as fast with a million messages as with ten.

use super::account::BalanceResponse;
use super::extract::Auth;
use super::{ApiError, AppState};
use crate::domain::{MessageStatus, Priority, Timestamp};
use crate::store::overview::{MINUTE_MS, Reached, Windows};
use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

/// Minutes in the per-minute series.
const MINUTES: i64 = 60;

fn counts(reached: Option<&Reached>) -> Map<String, Value> {
    MessageStatus::ALL
        .into_iter()
        .map(|s| {
            let n = reached.and_then(|r| r.get(&s)).copied().unwrap_or(0);
            (s.as_str().to_owned(), n.into())
        })
        .collect()
}

fn ratio(numerator: i64, denominator: i64) -> Value {
    if denominator <= 0 {
        Value::Null
    } else {
        let r = (numerator as f64 / denominator as f64).min(1.0);
        json!((r * 10_000.0).round() / 10_000.0)
    }
}

/// A window's figures. The rates are of the messages handed over in the window: delivered
/// of sent, and read of delivered.
fn window(reached: &Reached) -> Value {
    let get = |s: MessageStatus| reached.get(&s).copied().unwrap_or(0);
    json!({
        "total": get(MessageStatus::Queued),
        "by_status": counts(Some(reached)),
        "delivery_rate": ratio(get(MessageStatus::Delivered), get(MessageStatus::Sent)),
        "read_rate": ratio(get(MessageStatus::Read), get(MessageStatus::Delivered)),
    })
}

/// The account's overview.
#[utoipa::path(get, path = "/api/messaging/overview", tag = "account",
    responses((status = 200, description = "{as_of, balance, per_minute (the last 60 minutes, \
        oldest first: how many messages reached each status in each minute), queue (waiting \
        or being handed over, by priority), last_24h and last_30d ({total accepted, by_status \
        reached, delivery_rate = delivered / sent, read_rate = read / delivered})}"),
        (status = 401, description = "unauthorized")),
    security(("bearer" = [])))]
pub(crate) async fn overview(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<Json<Value>, ApiError> {
    let now = Timestamp::now();
    let windows = Windows::ending(now, MINUTES);
    let o = state.store().overview(&key.account_id, windows).await?;
    let per_minute: Vec<Value> = (0..MINUTES)
        .map(|i| {
            let start = windows.minutes_from + i * MINUTE_MS;
            let mut entry = Map::new();
            entry.insert(
                "minute".to_owned(),
                Timestamp::from_millis(start).to_rfc3339().into(),
            );
            entry.extend(counts(o.minutes.get(&start)));
            Value::Object(entry)
        })
        .collect();
    let queue: Map<String, Value> = Priority::DESCENDING
        .into_iter()
        .map(|p| {
            let waiting = o.queue.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n);
            (p.as_str().to_owned(), waiting.into())
        })
        .collect();
    Ok(Json(json!({
        "as_of": now.to_rfc3339(),
        "balance": BalanceResponse::from(o.balance),
        "per_minute": per_minute,
        "queue": queue,
        "last_24h": window(&o.last_day),
        "last_30d": window(&o.last_month),
    })))
}
