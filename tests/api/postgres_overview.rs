//! The overview (`GET /overview`) on PostgreSQL: the real `herald` processes on a database of
//! the test's own (PostgreSQL at `HERALD_TEST_POSTGRES`, which `.ci/run` starts when it is
//! down), talked to over HTTP. What messages went through shows in the minutes and the rates;
//! and two worker processes (with four more folders in the test's own process) folding the
//! event log at once count every status reached exactly once, though a transaction holding a
//! low event number commits after the workers' higher ones (made certain here by holding one
//! open, not left to chance).

use crate::crash::Herald;
use crate::helpers::{
    API_KEY, bulk_items, eventually, history_statuses, number, numbers_from, send_bulk_to, test_dir,
};
use crate::overview::{minutes_summed, nonzero};
use crate::postgres::{TestDatabase, migrate, process_env};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use herald::config::{DatabaseSettings, Synchronous};
use herald::store::Store;
use herald::store::overview::TallyFolder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PREFIX: &str = "herald_overview";

/// Statuses by name → how many.
type Counts = BTreeMap<String, i64>;

async fn get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    let response = client
        .get(format!("{base}/api/messaging{path}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("JSON")
}

/// Each message's status view (its history with times).
async fn views(client: &reqwest::Client, base: &str, ids: &[String]) -> Vec<Value> {
    let mut views = Vec::with_capacity(ids.len());
    for id in ids {
        views.push(get(client, base, &format!("/message/{id}/status/")).await);
    }
    views
}

/// How many of the messages reached each status, from their histories.
fn reached(views: &[Value]) -> Counts {
    let mut counts = Counts::new();
    for view in views {
        for status in history_statuses(view) {
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    counts
}

/// The histories' statuses per minute they were reached in (the minute's start as the
/// overview writes it).
fn reached_per_minute(views: &[Value]) -> BTreeMap<String, Counts> {
    let mut minutes: BTreeMap<String, Counts> = BTreeMap::new();
    for view in views {
        for entry in view["history"].as_array().expect("a history") {
            let at = DateTime::parse_from_rfc3339(entry["at"].as_str().expect("a time"))
                .expect("RFC 3339")
                .timestamp_millis();
            let minute = DateTime::<Utc>::from_timestamp_millis(at - at.rem_euclid(60_000))
                .expect("a time")
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            let status = entry["status"].as_str().expect("a status").to_owned();
            *minutes
                .entry(minute)
                .or_default()
                .entry(status)
                .or_insert(0) += 1;
        }
    }
    minutes
}

/// The overview's per-minute series, its empty minutes left out.
fn per_minute(overview: &Value) -> BTreeMap<String, Counts> {
    overview["per_minute"]
        .as_array()
        .expect("a series")
        .iter()
        .filter_map(|minute| {
            let counts: Counts = minute
                .as_object()
                .expect("a minute")
                .iter()
                .filter_map(|(s, n)| n.as_i64().filter(|n| *n > 0).map(|n| (s.clone(), n)))
                .collect();
            let start = minute["minute"].as_str().expect("its start").to_owned();
            (!counts.is_empty()).then_some((start, counts))
        })
        .collect()
}

fn counts(pairs: &[(&str, i64)]) -> Counts {
    pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_and_delivered_show_in_the_minutes_and_the_rates_on_postgres() {
    // Arrange: one `herald serve` (API and workers) on a database of its own; five messages:
    // three read, one delivered and never read (…0003), one undelivered (…0004).
    let db = TestDatabase::named(PREFIX).await;
    let dir = test_dir();
    migrate(dir.path(), &db);
    let journal = dir.path().join("serve.log").display().to_string();
    let mut serve =
        Herald::start_command(dir.path(), "serve", &["serve"], &process_env(&db, &journal));
    let client = reqwest::Client::new();
    serve.wait_healthy(&client).await;
    let items: Vec<Value> = ["0101", "0102", "0103", "0003", "0004"]
        .iter()
        .map(|n| json!({"phone_number": number(n), "message": "overview on postgres"}))
        .collect();

    // Act
    let ids = send_bulk_to(&client, &serve.base, API_KEY, &items).await;

    // Assert: once every message is where it stays, the overview counts what the histories
    // hold, in the minutes they hold it, with the rates that follow.
    let last = counts(&[
        ("queued", 5),
        ("sending", 5),
        ("sent", 5),
        ("delivered", 4),
        ("read", 3),
        ("undelivered", 1),
    ]);
    let o = eventually(
        "the overview to count every status reached",
        Duration::from_secs(60),
        || async {
            let o = get(&client, &serve.base, "/overview").await;
            (nonzero(&o["last_24h"]["by_status"]) == last).then_some(o)
        },
    )
    .await;
    let views = views(&client, &serve.base, &ids).await;
    assert_eq!(reached(&views), last, "the histories");
    assert_eq!(
        per_minute(&o),
        reached_per_minute(&views),
        "{}",
        o["per_minute"]
    );
    assert_eq!(minutes_summed(&o), last);
    assert_eq!(o["per_minute"].as_array().map(Vec::len), Some(60));
    for window in ["last_24h", "last_30d"] {
        assert_eq!(nonzero(&o[window]["by_status"]), last, "{window}");
        assert_eq!(o[window]["total"], 5, "{window}");
        assert_eq!(
            o[window]["delivery_rate"],
            json!(0.8),
            "4 delivered of 5 sent"
        );
        assert_eq!(o[window]["read_rate"], json!(0.75), "3 read of 4 delivered");
    }
    assert_eq!(
        o["queue"],
        json!({"urgent": 0, "high": 0, "normal": 0, "low": 0})
    );
    let balance = get(&client, &serve.base, "/account/balance/").await;
    assert_eq!(o["balance"]["balance"], balance["balance"]);
    assert_eq!(o["balance"]["currency"], balance["currency"]);
    drop(serve);
    db.drop_now().await;
}

/// How often each process logged a run of its tally fold (at debug).
fn fold_runs(processes: &[Herald]) -> Vec<usize> {
    processes
        .iter()
        .map(|p| p.logs().matches("tally fold ran").count())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_folding_at_once_count_every_status_exactly_once() {
    // Arrange: the API process alone accepts 3,000 messages, and one more scheduled an hour
    // ahead.
    let db = TestDatabase::named(PREFIX).await;
    let dir = test_dir();
    migrate(dir.path(), &db);
    let pool = db.pool().await;
    // The fold's premise (see store/postgres/overview.rs): event numbers are handed out in
    // increasing order, none cached ahead by a session.
    let cache: i64 = sqlx::query_scalar(
        "SELECT seqcache FROM pg_sequence \
         WHERE seqrelid = pg_get_serial_sequence('event', 'event_seq')::regclass",
    )
    .fetch_one(&pool)
    .await
    .expect("the event numbers' sequence");
    assert_eq!(cache, 1);
    let journal = |run: &str| dir.path().join(format!("{run}.log")).display().to_string();
    let api_journal = journal("api");
    let mut api = Herald::start_command(
        dir.path(),
        "api",
        &["serve", "--no-workers"],
        &process_env(&db, &api_journal),
    );
    let client = reqwest::Client::new();
    api.wait_healthy(&client).await;
    let items = bulk_items(&numbers_from(1000, 3_000), "normal", "tallied");
    let sent: Vec<Vec<String>> = futures::stream::iter(items.chunks(100))
        .map(|chunk| send_bulk_to(&client, &api.base, API_KEY, chunk))
        .buffer_unordered(4)
        .collect()
        .await;
    assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), 3_000);
    let later =
        (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let later_item = json!({"phone_number": number("0999"), "message": "later",
        "scheduled_at": later});
    let scheduled = send_bulk_to(&client, &api.base, API_KEY, &[later_item]).await;
    let scheduled = scheduled.first().expect("its id").clone();
    // Another writer's transaction, slow to commit: its event's number is taken now, and it
    // stays open while the workers' events take higher numbers and commit before it.
    let (slow, held) = crate::postgres::cancel_in_open_transaction(&pool, &scheduled).await;

    // Act: two worker processes deliver the 3,000, each folding the event log into the
    // tallies about once a second, all at once.
    let worker_journals: Vec<String> = (0..2).map(|i| journal(&format!("worker-{i}"))).collect();
    let workers: Vec<Herald> = worker_journals
        .iter()
        .enumerate()
        .map(|(i, journal)| {
            Herald::start_command(
                dir.path(),
                &format!("worker-{i}"),
                &["worker"],
                &[
                    process_env(&db, journal),
                    vec![(
                        "RUST_LOG",
                        "info,sqlx=warn,apalis_core=warn,herald::store::postgres::overview=debug",
                    )],
                ]
                .concat(),
            )
        })
        .collect();
    // Four more folders in this process fold as fast as they can, so that folds of the same
    // events overlap all the time (the cursor's fence is what keeps them from adding the
    // same events twice).
    let store = Store::open(&DatabaseSettings {
        url: db.url.clone(),
        max_connections: 8,
        sqlite_readers: 4,
        synchronous: Synchronous::Normal,
        commit_batch_max: 512,
        busy_timeout_ms: 5_000,
        max_page_count: 0,
    })
    .await
    .expect("the store opens");
    let stop = Arc::new(AtomicBool::new(false));
    let folders: Vec<tokio::task::JoinHandle<u64>> = (0..4)
        .map(|_| {
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut folder = TallyFolder::default();
                let mut folded = 0;
                while !stop.load(Ordering::Relaxed) {
                    folded += store.fold_tallies(500, &mut folder).await.expect("a fold");
                    tokio::task::yield_now().await;
                }
                folded
            })
        })
        .collect();
    // Out of order: events numbered after the slow one have committed...
    eventually(
        "the workers' events to commit after the slow one's number",
        Duration::from_secs(60),
        || async {
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(event_seq), 0) FROM event")
                .fetch_one(&pool)
                .await
                .ok()?;
            (last > held).then_some(())
        },
    )
    .await;
    // ...and each worker has since run its fold twice.
    let before = fold_runs(&workers);
    eventually(
        "each worker to run its fold twice more",
        Duration::from_secs(30),
        || async {
            let runs = fold_runs(&workers);
            runs.iter()
                .zip(&before)
                .all(|(now, then)| *now >= then + 2)
                .then_some(())
        },
    )
    .await;

    // Assert: no fold moved the cursor past the event still uncommitted (it would never be
    // counted: numbers are not commit-ordered on PostgreSQL).
    let cursor: i64 = sqlx::query_scalar("SELECT event_seq FROM status_tally_cursor")
        .fetch_one(&pool)
        .await
        .expect("the cursor");
    assert!(
        cursor < held,
        "the tallies were folded to event {cursor}, past event {held} still uncommitted"
    );
    slow.commit().await.expect("the slow transaction commits");
    eventually("every message read", Duration::from_secs(180), || async {
        let read: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE status = 'read'")
            .fetch_one(&pool)
            .await
            .ok()?;
        (read == 3_000).then_some(())
    })
    .await;
    // Every event folded: the cursor has reached the last one (nothing is written any more).
    eventually(
        "the tallies to catch up with the event log",
        Duration::from_secs(60),
        || async {
            let (cursor, last): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT event_seq FROM status_tally_cursor), \
                        (SELECT COALESCE(MAX(event_seq), 0) FROM event)",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (cursor == last).then_some(())
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut folded_here = 0;
    for folder in folders {
        folded_here += folder.await.expect("a folder");
    }
    store.close().await;
    let runs = fold_runs(&workers);
    assert!(
        folded_here > 0 && runs.iter().all(|n| *n > 0),
        "every folder took part: {folded_here} events folded here, worker runs {runs:?}"
    );

    // Assert: per status, the overview's total is exactly how many messages reached it (their
    // histories, counted in the database), so no event was counted twice or left out.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM message_status_event GROUP BY status")
            .fetch_all(&pool)
            .await
            .expect("the histories");
    let histories: Counts = rows.into_iter().collect();
    assert_eq!(
        histories,
        counts(&[
            ("queued", 3_001),
            ("sending", 3_000),
            ("sent", 3_000),
            ("delivered", 3_000),
            ("read", 3_000),
            ("canceled", 1),
        ])
    );
    let o = get(&client, &api.base, "/overview").await;
    assert_eq!(nonzero(&o["last_24h"]["by_status"]), histories);
    assert_eq!(nonzero(&o["last_30d"]["by_status"]), histories);
    assert_eq!(minutes_summed(&o), histories, "{}", o["per_minute"]);
    assert_eq!(o["last_24h"]["total"], 3_001);
    pool.close().await;
    drop(workers);
    drop(api);
    db.drop_now().await;
}
