//! The delivery side of the queue: claiming due messages by priority lane, recording what
//! the provider said, and applying receipts. Every status change is a conditional UPDATE that
//! names the allowed predecessors (domain::status), so a move the table forbids simply
//! matches no row.

use crate::domain::{
    AccountId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp, WhatsappTemplate,
};
use crate::store::{
    ClaimToken, ClaimedMessage, DeliveryOutcome, DeliveryReport, HELD, StatusUpdate, UpdateResult,
};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Share of a claim each lower lane gets first when it has work, so a flood of urgent
/// traffic slows `low` down but never stops it (SPEC §4: no starvation).
fn floor(priority: Priority, batch: usize) -> usize {
    match priority {
        Priority::Urgent => 0,
        Priority::High => batch / 4,
        Priority::Normal => batch / 8,
        Priority::Low => (batch / 16).max(1),
    }
}

/// How many to ask of `priority`'s lane: its floor in the first pass of a fair claim, then
/// everything left, highest lane first.
fn lane_quota(pass: usize, priority: Priority, remaining: usize, batch: usize) -> usize {
    if pass == 0 {
        floor(priority, batch).min(remaining)
    } else {
        remaining
    }
}

pub(super) async fn claim_due(
    conn: &mut SqliteConnection,
    instance_id: &str,
    limit: usize,
    lease: Duration,
    fair: bool,
) -> sqlx::Result<Vec<ClaimedMessage>> {
    let now = Timestamp::now();
    let lease_until = now.plus(lease);
    let mut claimed = Vec::with_capacity(limit);
    // One probe tells which lanes have work; asking an empty lane costs a statement (a round
    // trip to SQLite's thread) for nothing, and most traffic sits in one lane.
    let due = sqlx::query(include_str!("queries/due_lanes.sql"))
        .bind(now.millis())
        .fetch_one(&mut *conn)
        .await?;
    let mut exhausted: Vec<Priority> = Vec::new();
    for (priority, column) in [
        (Priority::Urgent, "urgent"),
        (Priority::High, "high"),
        (Priority::Normal, "normal"),
        (Priority::Low, "low"),
    ] {
        if !due.try_get::<bool, _>(column)? {
            exhausted.push(priority);
        }
    }
    if exhausted.len() == Priority::DESCENDING.len() {
        return Ok(claimed);
    }
    // A fair claim gives lower lanes their floors first; others follow priority strictly
    // (small top-ups, where a floor of one would be the whole claim, taken from urgent).
    // With a single lane due there is nothing to share.
    let single_lane = exhausted.len() + 1 == Priority::DESCENDING.len();
    let first_pass = if fair && !single_lane { 0 } else { 1 };
    for pass in first_pass..2 {
        for priority in Priority::DESCENDING {
            let remaining = limit.saturating_sub(claimed.len());
            let quota = lane_quota(pass, priority, remaining, limit);
            if quota == 0 || exhausted.contains(&priority) {
                continue;
            }
            let rows = sqlx::query(include_str!("queries/claim_lane.sql"))
                .bind(lease_until.millis())
                .bind(instance_id)
                .bind(now.millis())
                .bind(priority.rank())
                .bind(i64::try_from(quota).unwrap_or(i64::MAX))
                .fetch_all(&mut *conn)
                .await?;
            if rows.len() < quota {
                exhausted.push(priority);
            }
            for row in rows {
                claimed.push(claimed_message(&row)?);
            }
        }
    }
    let any_opt_out: bool = due.try_get("any_opt_out")?;
    let claimed = screen(conn, claimed, now, any_opt_out).await?;
    if !claimed.is_empty() {
        let ids: Vec<&str> = claimed.iter().map(|m| m.message_id.as_str()).collect();
        sqlx::query(include_str!("queries/insert_status_events.sql"))
            .bind(serde_json::to_string(&ids).unwrap_or_default())
            .bind(MessageStatus::Sending.as_str())
            .bind(now.millis())
            .execute(&mut *conn)
            .await?;
    }
    Ok(claimed)
}

/// Takes out of a fresh claim, before its `sending` is recorded, what must not be sent: messages
/// to numbers that opted out after they were accepted (failed, `recipient_opted_out`), and
/// messages of paused (held again) or canceled campaigns.
/// `any_opt_out`: whether any account has any opt-out (when none has, no lookup is needed).
async fn screen(
    conn: &mut SqliteConnection,
    claimed: Vec<ClaimedMessage>,
    now: Timestamp,
    any_opt_out: bool,
) -> sqlx::Result<Vec<ClaimedMessage>> {
    if claimed.is_empty() {
        return Ok(claimed);
    }
    let mut unsent = Vec::new();
    let mut opted: HashSet<String> = HashSet::new();
    if any_opt_out {
        let ids: Vec<&str> = claimed.iter().map(|m| m.message_id.as_str()).collect();
        opted = sqlx::query_scalar(include_str!("queries/claimed_opted_out.sql"))
            .bind(serde_json::to_string(&ids).unwrap_or_default())
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    }
    let campaigns: HashSet<&str> = claimed
        .iter()
        .filter_map(|m| m.campaign_id.as_deref())
        .filter(|id| id.starts_with("cmp_"))
        .collect();
    let mut states: HashMap<String, String> = HashMap::new();
    if !campaigns.is_empty() {
        let ids: Vec<&str> = campaigns.into_iter().collect();
        let rows = sqlx::query(include_str!("queries/campaign_states.sql"))
            .bind(serde_json::to_string(&ids).unwrap_or_default())
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            states.insert(row.try_get("campaign_id")?, row.try_get("status")?);
        }
    }
    if opted.is_empty() && states.values().all(|s| s != "paused" && s != "canceled") {
        return Ok(claimed);
    }
    let mut keep = Vec::with_capacity(claimed.len());
    for mut m in claimed {
        let campaign = m
            .campaign_id
            .as_deref()
            .and_then(|id| states.get(id))
            .map(String::as_str);
        // A message in doubt may have been sent already: it must not be ended unsent here.
        // The worker asks the provider first, then applies the opt-out or the cancellation
        // (a pause only parks it, which ends nothing).
        if m.in_doubt_since.is_some() && campaign != Some("paused") {
            m.opted_out = opted.contains(m.message_id.as_str());
            keep.push(m);
            continue;
        }
        let (status, code, message) = if opted.contains(m.message_id.as_str()) {
            (
                MessageStatus::Failed,
                "recipient_opted_out",
                "the recipient opted out after the message was accepted",
            )
        } else if campaign == Some("canceled") {
            (
                MessageStatus::Canceled,
                "campaign_canceled",
                "the campaign was canceled before this message was sent",
            )
        } else if campaign == Some("paused") {
            sqlx::query(include_str!("queries/park_claim.sql"))
                .bind(m.message_id.as_str())
                .bind(HELD)
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            continue;
        } else {
            keep.push(m);
            continue;
        };
        let outcome = DeliveryOutcome::Unsent {
            status,
            error_code: code.to_owned(),
            error_message: message.to_owned(),
            at: now,
        };
        unsent.push(DeliveryReport::of(&m, outcome));
    }
    record_outcomes(conn, unsent).await?;
    Ok(keep)
}

/// A stored template (JSON written by the accept path from a parsed one).
fn stored_template(json: Option<String>) -> sqlx::Result<Option<WhatsappTemplate>> {
    json.map(|j| serde_json::from_str(&j).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

fn claimed_message(row: &SqliteRow) -> sqlx::Result<ClaimedMessage> {
    let channel: String = row.try_get("channel")?;
    let priority: i64 = row.try_get("priority")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(ClaimedMessage {
        message_id: MessageId::from_stored(row.try_get("message_id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
        phone_number: row.try_get("phone_number")?,
        sender_id: row.try_get("sender_id")?,
        body: row.try_get("body")?,
        attachment_url: row.try_get("attachment_url")?,
        whatsapp_template: stored_template(row.try_get("whatsapp_template")?)?,
        priority: Priority::from_rank(priority).unwrap_or(Priority::Normal),
        campaign_id: row.try_get("campaign_id")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        cost: Money::from_units(row.try_get("cost")?),
        claim: ClaimToken::from_stored(row.try_get("claim_seq")?),
        bound_to: row.try_get("provider")?,
        in_doubt_since: row
            .try_get::<Option<i64>, _>("in_doubt_since")?
            .map(Timestamp::from_millis),
        opted_out: false,
    })
}

/// A message going back to the queue to be tried again.
struct Retry {
    due_at: Timestamp,
    error_code: String,
    error_message: String,
    bound_to: Option<&'static str>,
    in_doubt_since: Option<Timestamp>,
}

/// Gives the message back to the queue if claim `claim` still holds it.
async fn schedule_retry(
    conn: &mut SqliteConnection,
    id: &str,
    claim: ClaimToken,
    retry: Retry,
    now: Timestamp,
) -> sqlx::Result<()> {
    sqlx::query(include_str!("queries/schedule_retry.sql"))
        .bind(id)
        .bind(retry.due_at.millis())
        .bind(retry.error_code)
        .bind(retry.error_message)
        .bind(now.millis())
        .bind(claim.value())
        .bind(retry.bound_to)
        .bind(retry.in_doubt_since.map(|at| at.millis()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Per-account money moved by one batch of outcomes.
#[derive(Default)]
struct Settlement {
    charged: i64,
    sent: i64,
    released: i64,
}

pub(super) async fn record_outcomes(
    conn: &mut SqliteConnection,
    reports: Vec<DeliveryReport>,
) -> sqlx::Result<()> {
    let now = Timestamp::now();
    let mut accounts: HashMap<String, Settlement> = HashMap::new();
    let mut sent = Vec::new();
    let mut providers: Vec<&'static str> = Vec::new();
    for DeliveryReport {
        message_id,
        claim,
        outcome,
    } in reports
    {
        let id = message_id.as_str();
        match outcome {
            DeliveryOutcome::Sent {
                provider,
                provider_message_id,
                at,
            } => {
                if !providers.contains(&provider) {
                    providers.push(provider);
                }
                sent.push(serde_json::json!({
                    "id": id,
                    "claim": claim.value(),
                    "provider": provider,
                    "ref": provider_message_id,
                    "at": at.millis(),
                }));
            }
            DeliveryOutcome::Retry {
                due_at,
                error_code,
                error_message,
                bound_to,
                in_doubt_since,
            } => {
                let retry = Retry {
                    due_at,
                    error_code,
                    error_message,
                    bound_to,
                    in_doubt_since,
                };
                schedule_retry(conn, id, claim, retry, now).await?;
            }
            DeliveryOutcome::Unresolved {
                due_at,
                in_doubt_since,
                error_code,
                error_message,
            } => {
                // Not bound: the lookup did not say which provider has it.
                let retry = Retry {
                    due_at,
                    error_code,
                    error_message,
                    bound_to: None,
                    in_doubt_since: Some(in_doubt_since),
                };
                schedule_retry(conn, id, claim, retry, now).await?;
            }
            DeliveryOutcome::Unsent {
                status,
                error_code,
                error_message,
                at,
            } => {
                let row = sqlx::query(include_str!("queries/mark_unsent.sql"))
                    .bind(id)
                    .bind(status.as_str())
                    .bind(error_code)
                    .bind(error_message)
                    .bind(at.millis())
                    .bind(claim.value())
                    .fetch_optional(&mut *conn)
                    .await?;
                if let Some(row) = row {
                    let account: String = row.try_get("account_id")?;
                    let cost: i64 = row.try_get("cost")?;
                    accounts.entry(account).or_default().released += cost;
                    let at: i64 = row.try_get("updated_at")?;
                    insert_events(conn, status, &[(id, at)]).await?;
                }
            }
            DeliveryOutcome::Held => {
                sqlx::query(include_str!("queries/hold_claim.sql"))
                    .bind(id)
                    .bind(HELD)
                    .bind(now.millis())
                    .bind(claim.value())
                    .execute(&mut *conn)
                    .await?;
            }
            DeliveryOutcome::Released => {
                sqlx::query(include_str!("queries/release_claim.sql"))
                    .bind(id)
                    .bind(now.millis())
                    .bind(claim.value())
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }

    if !sent.is_empty() {
        let rows = sqlx::query(include_str!("queries/mark_sent.sql"))
            .bind(serde_json::Value::Array(sent).to_string())
            .fetch_all(&mut *conn)
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        let mut references = Vec::with_capacity(rows.len());
        for row in &rows {
            let account: String = row.try_get("account_id")?;
            let settlement = accounts.entry(account).or_default();
            settlement.charged += row.try_get::<i64, _>("cost")?;
            settlement.sent += 1;
            events.push((
                row.try_get::<String, _>("message_id")?,
                row.try_get::<i64, _>("updated_at")?,
            ));
            references.push(row.try_get::<String, _>("provider_message_id")?);
        }
        let events: Vec<(&str, i64)> = events.iter().map(|(id, at)| (id.as_str(), *at)).collect();
        insert_events(conn, MessageStatus::Sent, &events).await?;
        apply_held_receipts(conn, &providers, &references).await?;
    }

    let day = now.day();
    for (account, s) in accounts {
        if s.sent > 0 {
            // Three statements, one command: one round trip to SQLite's thread, not three.
            sqlx::query(concat!(
                include_str!("queries/settle_balance.sql"),
                include_str!("queries/record_charge.sql"),
                include_str!("queries/count_sent.sql"),
            ))
            .bind(&account)
            .bind(s.charged)
            .bind(now.millis())
            .bind(s.sent)
            .bind(&day)
            .execute(&mut *conn)
            .await?;
        }
        if s.released > 0 {
            sqlx::query(include_str!("queries/release_reservation.sql"))
                .bind(s.released)
                .bind(now.millis())
                .bind(&account)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Applies the receipts that overtook the sends just recorded (held in `pending_receipt`).
/// A provider id is unique per provider, so only the providers of this batch are asked.
async fn apply_held_receipts(
    conn: &mut SqliteConnection,
    providers: &[&'static str],
    references: &[String],
) -> sqlx::Result<()> {
    let references = serde_json::to_string(references).unwrap_or_default();
    for provider in providers {
        let rows = sqlx::query(include_str!("queries/take_pending_receipts.sql"))
            .bind(*provider)
            .bind(&references)
            .fetch_all(&mut *conn)
            .await?;
        let mut held = Vec::with_capacity(rows.len());
        for row in rows {
            let status: String = row.try_get("status")?;
            // Only statuses a receipt can carry were ever held.
            let Some(status) = MessageStatus::parse(&status) else {
                continue;
            };
            held.push(StatusUpdate {
                provider,
                provider_message_id: row.try_get("provider_message_id")?,
                status,
                at: Timestamp::from_millis(row.try_get("at")?),
                error_code: row.try_get("error_code")?,
                error_message: row.try_get("error_message")?,
            });
        }
        if !held.is_empty() {
            apply_status_updates(conn, held).await?;
        }
    }
    Ok(())
}

async fn insert_events(
    conn: &mut SqliteConnection,
    status: MessageStatus,
    events: &[(&str, i64)],
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(include_str!("queries/insert_status_events_at.sql"))
        .bind(serde_json::to_string(events).unwrap_or_default())
        .bind(status.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn apply_status_updates(
    conn: &mut SqliteConnection,
    updates: Vec<StatusUpdate>,
) -> sqlx::Result<Vec<UpdateResult>> {
    let mut results = vec![UpdateResult::Held; updates.len()];
    // Lifecycle order, so a `delivered` and a `read` in the same batch both apply.
    let mut order: Vec<usize> = (0..updates.len()).collect();
    order.sort_by_key(|i| updates.get(*i).map(|u| (u.provider, u.status.order())));
    let mut groups: Vec<(&'static str, MessageStatus, Vec<usize>)> = Vec::new();
    for i in order {
        let Some(u) = updates.get(i) else { continue };
        match groups.last_mut() {
            Some((p, s, members)) if *p == u.provider && *s == u.status => members.push(i),
            _ => groups.push((u.provider, u.status, vec![i])),
        }
    }

    for (provider, status, members) in groups {
        let payload: Vec<serde_json::Value> = members
            .iter()
            .filter_map(|i| updates.get(*i))
            .map(|u| {
                serde_json::json!({
                    "ref": u.provider_message_id,
                    "at": u.at.millis(),
                    "code": u.error_code,
                    "message": u.error_message,
                })
            })
            .collect();
        let allowed: Vec<&str> = status.predecessors().iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(include_str!("queries/apply_status_update.sql"))
            .bind(provider)
            .bind(status.as_str())
            .bind(serde_json::Value::Array(payload).to_string())
            .bind(serde_json::to_string(&allowed).unwrap_or_default())
            .fetch_all(&mut *conn)
            .await?;
        let mut applied: HashSet<String> = HashSet::new();
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let reference: String = row.try_get("provider_message_id")?;
            events.push((
                row.try_get::<String, _>("message_id")?,
                row.try_get::<i64, _>("updated_at")?,
            ));
            applied.insert(reference);
        }
        let event_refs: Vec<(&str, i64)> =
            events.iter().map(|(id, at)| (id.as_str(), *at)).collect();
        insert_events(conn, status, &event_refs).await?;

        // Receipts that moved nothing: one lookup for all of them (one per receipt made a
        // writer that fell behind, and so saw many, fall further behind).
        let missed: Vec<&str> = members
            .iter()
            .filter_map(|i| updates.get(*i))
            .map(|u| u.provider_message_id.as_str())
            .filter(|r| !applied.contains(*r))
            .collect();
        let known: HashSet<String> = if missed.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar(include_str!("queries/find_by_provider_refs.sql"))
                .bind(provider)
                .bind(serde_json::to_string(&missed).unwrap_or_default())
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect()
        };
        let mut unmatched = Vec::new();
        for i in members {
            let Some(u) = updates.get(i) else { continue };
            let result = if applied.remove(&u.provider_message_id) {
                UpdateResult::Applied
            } else if known.contains(&u.provider_message_id) {
                UpdateResult::Stale
            } else {
                unmatched.push(serde_json::json!({
                    "ref": u.provider_message_id,
                    "status": u.status.as_str(),
                    "at": u.at.millis(),
                    "code": u.error_code,
                    "message": u.error_message,
                }));
                UpdateResult::Held
            };
            if let Some(slot) = results.get_mut(i) {
                *slot = result;
            }
        }
        if !unmatched.is_empty() {
            sqlx::query(include_str!("queries/hold_pending_receipts.sql"))
                .bind(provider)
                .bind(serde_json::Value::Array(unmatched).to_string())
                .bind(Timestamp::now().millis())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_lanes_get_their_floor_first_then_the_rest_goes_top_down() {
        let batch = 256;
        assert_eq!(lane_quota(0, Priority::Urgent, batch, batch), 0);
        assert_eq!(lane_quota(0, Priority::High, batch, batch), 64);
        assert_eq!(lane_quota(0, Priority::Low, batch, batch), 16);
        assert_eq!(
            lane_quota(0, Priority::Low, 3, batch),
            3,
            "never more than what is left"
        );
        assert_eq!(lane_quota(1, Priority::Urgent, 240, batch), 240);
        assert!(
            floor(Priority::Low, 4) >= 1,
            "low keeps a slot even in tiny batches"
        );
    }
}
