//! Proof under faults (issue 7): a worker that lost its claim cannot overwrite the new owner,
//! a flaky and throttling network still delivers everything without retrying early, reads
//! never mix two moments, and a receipt that overtakes our record of the send is kept on disk
//! until the send is recorded.

use crate::helpers::{
    Handover, HandoverCounts, PATIENCE, TestApp, bulk_items, eventually, history_in_order,
    history_statuses, numbers_from, read_journal, spawn_app_with, spawn_in, test_dir,
};
use herald::domain::{MessageStatus, Timestamp};
use herald::store::{DeliveryOutcome, DeliveryReport, StatusUpdate, UpdateResult};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// Sends `count` messages (numbers from `first` on) in bulk requests of 100; returns the ids.
async fn send_many(app: &TestApp, first: u32, count: u32, priority: &str) -> Vec<String> {
    let numbers = numbers_from(first, count);
    let requests = numbers.chunks(100).map(|chunk| {
        let items = bulk_items(chunk, priority, "faults");
        async move { app.send_bulk_ok(&items).await }
    });
    futures::future::join_all(requests).await.concat()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.fetch_one::<(i64,)>(sql).await.0
}

#[tokio::test]
async fn a_worker_that_stalled_past_its_lease_cannot_overwrite_the_new_owners_work() {
    // Arrange: 40 messages claimed by a worker that then stalls (it never heartbeats, as a
    // paused or stopped process would not), before any other worker runs.
    const N: u32 = 40;
    let app = spawn_in(test_dir(), "", false).await;
    let ids = send_many(&app, 2000, N, "normal").await;
    let stalled = app
        .store
        .claim_due("stalled-worker", N as usize, Duration::from_secs(1), true)
        .await
        .expect("the stalled worker claims");
    assert_eq!(stalled.len(), N as usize);
    let dir = app.stop().await;

    // Act: a live worker takes the claims over; while it is still handing them to a slow
    // provider, the stalled worker wakes and reports every kind of outcome for the claims it
    // lost. Then the live worker finishes.
    let app = spawn_in(dir, "[providers.mock]\naccept_delay_ms = 1500\n", true).await;
    eventually("the live worker holds every claim", PATIENCE, || async {
        let taken = count(
            &app,
            "SELECT COUNT(*) FROM message WHERE status = 'sending' AND claimed_by LIKE 'worker-%'",
        )
        .await;
        (taken == i64::from(N)).then_some(())
    })
    .await;
    let stale: Vec<DeliveryReport> = stalled
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let outcome = match i % 5 {
                0 => DeliveryOutcome::Sent {
                    provider: "mock",
                    provider_message_id: format!("stale-{i}"),
                    at: Timestamp::now(),
                },
                1 => DeliveryOutcome::Retry {
                    due_at: Timestamp::now(),
                    error_code: "stale".into(),
                    error_message: "from the stalled worker".into(),
                    bound_to: None,
                    in_doubt_since: None,
                },
                2 => DeliveryOutcome::Unsent {
                    status: MessageStatus::Failed,
                    error_code: "stale".into(),
                    error_message: "from the stalled worker".into(),
                    at: Timestamp::now(),
                },
                3 => DeliveryOutcome::Released,
                _ => DeliveryOutcome::Held,
            };
            DeliveryReport::of(m, outcome)
        })
        .collect();
    app.store
        .record_outcomes(stale)
        .await
        .expect("the reports are taken (and ignored)");
    for id in &ids {
        app.wait_for_status(id, "read").await;
    }

    // Assert: the new owner's work stands, exactly once.
    let counts = HandoverCounts::from_journal(&app.handover_log());
    for id in &ids {
        let view = app.status(id).await;
        assert_eq!(view["status"], "read", "{view}");
        assert_eq!(
            history_statuses(&view),
            ["queued", "sending", "sent", "delivered", "read"],
            "{view}"
        );
        assert!(history_in_order(&view), "{view}");
        assert!(
            view["provider_message_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("mock-")),
            "{view}"
        );
        assert!(view["error_code"].is_null(), "{view}");
        assert_eq!(counts.accepted.get(id.as_str()), Some(&1), "{id}");
    }
    let unleased = count(
        &app,
        &format!(
            "SELECT COUNT(*) FROM message WHERE claimed_by IS NOT NULL OR due_at > {}",
            Timestamp::now().plus(Duration::from_secs(3600)).millis()
        ),
    )
    .await;
    assert_eq!(
        unleased, 0,
        "nothing is held or leased by the stale reports"
    );
    let balance = app.balance().await;
    assert_eq!(
        balance["balance"].as_f64(),
        Some(1000.0 - f64::from(N) * 0.0075),
        "each message charged once, none released"
    );
}

#[tokio::test]
async fn a_flaky_throttling_network_delivers_everything_without_retrying_early() {
    // Arrange: 30 % of attempts fail: 20 % transiently, 10 % throttled with Retry-After: 2.
    const N: u32 = 2000;
    const MAX_ATTEMPTS: usize = 12;
    let app = spawn_app_with(&format!(
        "[providers.mock]\nfailure_rate = 0.2\nthrottle_rate = 0.1\n\
         throttle_retry_after_seconds = 2\n\
         [workers]\nmax_attempts = {MAX_ATTEMPTS}\nbackoff_initial_ms = 100\nbackoff_max_ms = 4000\n"
    ))
    .await;

    // Act
    let ids = send_many(&app, 1000, N, "normal").await;
    eventually(
        "every message delivered",
        Duration::from_secs(90),
        || async {
            let done = count(
                &app,
                "SELECT COUNT(*) FROM message WHERE status IN ('delivered', 'read')",
            )
            .await;
            (done == i64::from(N)).then_some(())
        },
    )
    .await;

    // Assert: from the provider's side, every attempt of every message.
    let mut attempts: HashMap<&str, Vec<&Handover>> = HashMap::new();
    let journal = read_journal(&app.handover_log());
    for h in &journal {
        attempts.entry(h.message_id()).or_default().push(h);
    }
    let (mut throttled, mut failed) = (0, 0);
    for id in &ids {
        let tries = attempts.get(id.as_str()).expect("attempted");
        assert!(
            tries.len() <= MAX_ATTEMPTS,
            "{id}: {} attempts",
            tries.len()
        );
        let accepted = tries
            .iter()
            .filter(|h| matches!(h, Handover::Accepted { .. }))
            .count();
        assert_eq!(accepted, 1, "{id} accepted once: {tries:?}");
        for pair in tries.windows(2) {
            if let Handover::Refused {
                at_ms,
                retry_after_ms,
                code,
                ..
            } = pair[0]
            {
                if *retry_after_ms > 0 {
                    throttled += 1;
                } else if code == "service_unavailable" {
                    failed += 1;
                }
                assert!(
                    pair[1].at_ms() >= at_ms + retry_after_ms,
                    "{id}: retried {} ms after a 429 that said {retry_after_ms} ms",
                    pair[1].at_ms() - at_ms
                );
            }
        }
    }
    // The faults really happened (expected ~20 % and ~10 % of about 2,860 attempts).
    assert!(failed > 300 && throttled > 150, "{failed} {throttled}");
    let max_attempts: i64 = count(&app, "SELECT MAX(attempts) FROM message").await;
    assert!(max_attempts <= MAX_ATTEMPTS as i64, "{max_attempts}");
}

#[tokio::test]
async fn status_and_history_agree_on_every_read_while_receipts_stream_in() {
    // Arrange
    const N: u32 = 5000;
    // Reads come two seconds after delivery: long enough that the loop below reads hundreds
    // of times while receipts stream in, on PostgreSQL too and beside the rest of the suite
    // (at 100 ms it once read only 384 times; at one second, 280 times).
    let app =
        spawn_app_with("[providers.mock]\ndeliver_after_ms = 50\nread_after_ms = 2000\n").await;
    let ids = send_many(&app, 1000, N, "normal").await;

    // Act: read statuses in a loop, eight at a time, until every message is read.
    let mut reads = 0usize;
    let mut midway = 0usize;
    let mut mixed = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    let mut next = 0usize;
    loop {
        let batch: Vec<&String> = (0..8).map(|k| &ids[(next + k * 613) % ids.len()]).collect();
        next = (next + 1) % ids.len();
        let views = futures::future::join_all(batch.iter().map(|id| app.status(id))).await;
        for view in views {
            reads += 1;
            if matches!(view["status"].as_str(), Some("sent" | "delivered")) {
                midway += 1;
            }
            let last = history_statuses(&view).last().cloned().unwrap_or_default();
            if view["status"].as_str() != Some(last.as_str()) {
                mixed.push(view);
            }
        }
        let left = count(&app, "SELECT COUNT(*) FROM message WHERE status <> 'read'").await;
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} never read");
    }

    // Assert
    assert!(
        mixed.is_empty(),
        "{} of {reads} reads mixed two moments, e.g. {}",
        mixed.len(),
        mixed[0]
    );
    // The reads overlapped the receipts: many found a message between its send and its
    // last receipt. (How many depends on the machine's speed: run alone, about 800 of 1,100
    // reads on PostgreSQL, 2,100 of 3,200 on SQLite.)
    assert!(
        midway >= 200,
        "only {midway} of {reads} reads found a message midway while receipts streamed in"
    );
}

/// The mock's provider id for a message (derived from its id, as the mock does).
fn mock_reference(message_id: &str) -> String {
    let digest = Sha256::digest(message_id.as_bytes());
    format!("mock-{}", hex::encode(&digest[..12]))
}

fn receipt(reference: &str, status: MessageStatus) -> StatusUpdate {
    StatusUpdate {
        provider: "mock",
        provider_message_id: reference.to_owned(),
        status,
        at: Timestamp::now(),
        error_code: None,
        error_message: None,
    }
}

async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    crate::helpers::metrics_text(&app.client, &app.address)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test]
async fn a_receipt_that_overtakes_the_send_is_kept_on_disk_and_applied_once() {
    // Arrange: the mock sends no receipts of its own within the test; a message scheduled a
    // few seconds out, and its receipts arriving before it is sent.
    let mock = "[providers.mock]\ndeliver_after_ms = 3600000\n";
    let app = spawn_app_with(mock).await;
    let at = Timestamp::now().plus(Duration::from_secs(3)).to_rfc3339();
    let response = app
        .send_message(&json!({"phone_number": "+14155552671", "message": "early receipts", "scheduled_at": at}))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("JSON")["message_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let reference = mock_reference(&id);
    let early = vec![
        receipt(&reference, MessageStatus::Delivered),
        receipt(&reference, MessageStatus::Read),
    ];

    // Act: the receipts arrive, Herald restarts, then the message is sent.
    let results = app
        .store
        .apply_status_updates(early.clone())
        .await
        .expect("the receipts are taken");
    assert_eq!(results, [UpdateResult::Held, UpdateResult::Held]);
    assert_eq!(metric(&app, "herald_receipts_pending").await, Some(2.0));
    assert_eq!(app.status(&id).await["status"], "queued");
    let dir = app.stop().await;
    let app = spawn_in(dir, mock, true).await;
    let view = app.wait_for_status(&id, "read").await;

    // Assert: applied in the transaction that recorded the send, in order, and only once.
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered", "read"],
        "{view}"
    );
    assert!(history_in_order(&view), "{view}");
    assert_eq!(metric(&app, "herald_receipts_pending").await, Some(0.0));
    let again = app
        .store
        .apply_status_updates(early)
        .await
        .expect("the repeats are taken");
    assert_eq!(again, [UpdateResult::Stale, UpdateResult::Stale]);
    assert_eq!(
        app.status(&id).await,
        view,
        "a repeated receipt changes nothing"
    );

    // A receipt for no message of ours is held, counted, and changes nothing.
    let stray = app
        .store
        .apply_status_updates(vec![receipt("mock-unknown", MessageStatus::Delivered)])
        .await
        .expect("taken");
    assert_eq!(stray, [UpdateResult::Held]);
    assert_eq!(metric(&app, "herald_receipts_pending").await, Some(1.0));
}
