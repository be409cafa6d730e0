//! `GET /stats/?days=N` (seed 004): messages created in the last N days (today included, by
//! UTC calendar day), counted by their current status.

use super::extract::Auth;
use super::{ApiError, AppState};
use crate::domain::{Channel, MessageStatus, Money, Timestamp};
use crate::store::StatsRow;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Deserialize)]
pub(crate) struct StatsQuery {
    days: Option<String>,
}

/// Counts by status, plus `total`.
#[derive(Default, Clone)]
struct Tally([i64; MessageStatus::ALL.len()]);

impl Tally {
    fn add(&mut self, status: MessageStatus, n: i64) {
        if let Some(i) = MessageStatus::ALL.iter().position(|s| *s == status)
            && let Some(slot) = self.0.get_mut(i)
        {
            *slot += n;
        }
    }

    fn get(&self, status: MessageStatus) -> i64 {
        MessageStatus::ALL
            .iter()
            .position(|s| *s == status)
            .and_then(|i| self.0.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for status in MessageStatus::ALL {
            out.insert(status.as_str().to_owned(), self.get(status).into());
        }
        out.insert("total".to_owned(), self.0.iter().sum::<i64>().into());
        out
    }
}

fn ratio(numerator: i64, denominator: i64) -> Value {
    if denominator == 0 {
        Value::Null
    } else {
        json!((numerator as f64 / denominator as f64 * 10_000.0).round() / 10_000.0)
    }
}

/// Delivery and read statistics.
#[utoipa::path(get, path = "/api/messaging/stats/", tag = "account",
    params(("days" = Option<u32>, Query, description = "1-366, default 30")),
    responses((status = 200, description = "{days, totals, by_day, by_channel, delivery_rate, read_rate, cost}"),
        (status = 400, description = "invalid_field (days)")),
    security(("bearer" = [])))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Auth(key): Auth,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("days", e.body_text()))?;
    let days: i64 = match query.days.as_deref() {
        None => 30,
        Some(raw) => raw
            .trim()
            .parse()
            .ok()
            .filter(|d| (1..=366).contains(d))
            .ok_or_else(|| {
                ApiError::invalid("days", "days must be a whole number from 1 to 366")
            })?,
    };
    let now = Timestamp::now();
    let today_start = now.millis() - now.millis().rem_euclid(DAY_MS);
    let since = Timestamp::from_millis(today_start - (days - 1) * DAY_MS);
    let rows: Vec<StatsRow> = state.store().stats(&key.account_id, since).await?;

    let mut totals = Tally::default();
    let mut by_day: BTreeMap<String, Tally> = BTreeMap::new();
    for d in 0..days {
        let day = since.plus(Duration::from_millis(
            u64::try_from(d * DAY_MS).unwrap_or(0),
        ));
        by_day.insert(day.day(), Tally::default());
    }
    let mut sms = Tally::default();
    let mut whatsapp = Tally::default();
    let mut cost = Money::ZERO;
    for row in &rows {
        totals.add(row.status, row.count);
        by_day
            .entry(row.day.clone())
            .or_default()
            .add(row.status, row.count);
        match row.channel {
            Channel::Sms => sms.add(row.status, row.count),
            Channel::Whatsapp => whatsapp.add(row.status, row.count),
        }
        cost = cost + row.cost;
    }
    use MessageStatus::*;
    let delivered = totals.get(Delivered) + totals.get(Read);
    let reached = totals.get(Sent) + delivered + totals.get(Undelivered);
    let by_day: Vec<Value> = by_day
        .into_iter()
        .map(|(date, tally)| {
            let mut entry = Map::new();
            entry.insert("date".to_owned(), date.into());
            entry.extend(tally.to_json());
            Value::Object(entry)
        })
        .collect();
    Ok(Json(json!({
        "days": days,
        "totals": totals.to_json(),
        "by_day": by_day,
        "by_channel": {"sms": sms.to_json(), "whatsapp": whatsapp.to_json()},
        "delivery_rate": ratio(delivered, reached),
        "read_rate": ratio(totals.get(Read), delivered),
        "cost": cost.to_f64(),
    })))
}
