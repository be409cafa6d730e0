//! `GET /overview`: the dashboard's figures agree with the messages' own histories (each
//! status counted once, though the workers fold the event log into the tallies while the
//! messages move), per account, and old tallies are forgotten.

use crate::helpers::{TestApp, eventually, history_statuses, number, send_bulk_to, spawn_app};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

async fn overview_as(app: &TestApp, key: &str) -> Value {
    app.get_ok_as("/overview", key).await
}

/// How many of `ids` reached each status, from their histories.
async fn reached(app: &TestApp, key: &str, ids: &[String]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for id in ids {
        for status in history_statuses(&app.status_view_as(id, key).await) {
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    counts
}

pub(crate) fn nonzero(counts: &Value) -> BTreeMap<String, i64> {
    counts
        .as_object()
        .expect("counts by status")
        .iter()
        .filter_map(|(s, n)| n.as_i64().filter(|n| *n > 0).map(|n| (s.clone(), n)))
        .collect()
}

/// The per-minute series summed over its minutes.
pub(crate) fn minutes_summed(overview: &Value) -> BTreeMap<String, i64> {
    let mut sum = BTreeMap::new();
    for minute in overview["per_minute"].as_array().expect("a series") {
        for (status, n) in minute.as_object().expect("a minute") {
            if let Some(n) = n.as_i64().filter(|n| *n > 0) {
                *sum.entry(status.clone()).or_insert(0) += n;
            }
        }
    }
    sum
}

#[tokio::test]
async fn the_overview_counts_what_the_histories_say_and_only_the_accounts_own() {
    // Arrange: five of ours (one ends undelivered), two of another account's.
    let app = spawn_app().await;
    let other_key = app.create_account("other", "100", 1_000_000).await;
    let ours: Vec<Value> = ["0101", "0102", "0103", "0104", "0004"]
        .iter()
        .map(|n| json!({"phone_number": number(n), "message": "hello"}))
        .collect();
    let our_ids = send_bulk_to(&app.client, &app.address, &app.api_key, &ours).await;
    let theirs: Vec<Value> = ["0201", "0202"]
        .iter()
        .map(|n| json!({"phone_number": number(n), "message": "theirs"}))
        .collect();
    let their_ids = send_bulk_to(&app.client, &app.address, &other_key, &theirs).await;
    let key = app.api_key.clone();

    // Act and assert: once the figures stop moving, the overview's last day, last month and
    // minutes each count exactly what the histories hold.
    let overview = eventually(
        "the overview to agree with the histories",
        Duration::from_secs(30),
        || async {
            let before = reached(&app, &key, &our_ids).await;
            let o = overview_as(&app, &key).await;
            let after = reached(&app, &key, &our_ids).await;
            let settled = before == after
                && before.get("queued") == Some(&5)
                && before.get("sending") == Some(&5)
                && before.get("delivered").unwrap_or(&0) + before.get("undelivered").unwrap_or(&0)
                    == 5
                && nonzero(&o["last_24h"]["by_status"]) == before;
            settled.then_some((o, before))
        },
    )
    .await;
    let (o, histories) = overview;
    assert_eq!(nonzero(&o["last_30d"]["by_status"]), histories);
    assert_eq!(minutes_summed(&o), histories, "{}", o["per_minute"]);
    assert_eq!(o["per_minute"].as_array().map(Vec::len), Some(60));
    assert_eq!(o["last_24h"]["total"], 5);
    assert_eq!(o["last_24h"]["by_status"]["undelivered"], 1);
    let sent = histories.get("sent").copied().unwrap_or(0);
    let delivered = histories.get("delivered").copied().unwrap_or(0);
    assert!(sent >= 4, "{histories:?}");
    let rate = o["last_24h"]["delivery_rate"].as_f64().expect("a rate");
    assert!(
        (rate - delivered as f64 / sent as f64).abs() < 1e-3,
        "delivery rate {rate} for {delivered} of {sent}"
    );
    assert_eq!(
        o["queue"],
        json!({"urgent": 0, "high": 0, "normal": 0, "low": 0})
    );
    let balance = app.balance().await;
    assert_eq!(o["balance"]["balance"], balance["balance"]);
    assert_eq!(o["balance"]["currency"], balance["currency"]);

    for id in &their_ids {
        app.wait_for_as(id, &other_key, crate::helpers::handed_over)
            .await;
    }
    let theirs = overview_as(&app, &other_key).await;
    assert_eq!(theirs["last_24h"]["total"], 2, "only the other account's");
    app.stop().await;
}

#[tokio::test]
async fn queued_messages_show_in_the_queue_by_priority() {
    // Arrange: a campaign-free send scheduled an hour ahead waits in the queue.
    let app = spawn_app().await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for priority in ["urgent", "low", "low"] {
        let response = app
            .send_message(&json!({"phone_number": number("0301"), "message": "later",
                "priority": priority, "scheduled_at": later}))
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }

    // Act
    let o = overview_as(&app, &app.api_key).await;

    // Assert
    assert_eq!(
        o["queue"],
        json!({"urgent": 1, "high": 0, "normal": 0, "low": 2})
    );
    app.stop().await;
}

#[tokio::test]
async fn tallies_past_their_time_are_forgotten() {
    // Arrange: a minute tally three hours old and an hour tally forty days old, beside today's.
    let app = spawn_app().await;
    app.send_ok(&number("0401"), "hi").await;
    let now = chrono::Utc::now().timestamp_millis();
    for (span, age_ms) in [
        (60_000_i64, 3 * 3_600_000_i64),
        (3_600_000, 40 * 86_400_000),
    ] {
        let bucket = now - age_ms - (now - age_ms).rem_euclid(span);
        let written = app
            .execute(&format!(
                "INSERT INTO status_tally (account_id, span, bucket, status, n) \
                 SELECT account_id, {span}, {bucket}, 'queued', 7 FROM account LIMIT 1"
            ))
            .await;
        assert_eq!(written, 1, "an old tally is written");
    }
    let cutoff = now - 2 * 3_600_000 - 60_000;
    let old = format!("SELECT COUNT(*) FROM status_tally WHERE bucket < {cutoff}");
    let count = async || -> i64 { app.fetch_one::<(i64,)>(&old).await.0 };
    // (Not counted here: the sweeper's own purge may already have taken them, and did once.)

    // Act
    app.store.purge_tallies().await.expect("purged");

    // Assert: the old ones went, today's stayed.
    assert_eq!(count().await, 0);
    let key = app.api_key.clone();
    eventually(
        "today's message counted",
        Duration::from_secs(30),
        || async { (overview_as(&app, &key).await["last_24h"]["total"] == 1).then_some(()) },
    )
    .await;
    app.stop().await;
}
