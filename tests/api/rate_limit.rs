//! Sender rate limits (SPEC §4), judged on the times the provider saw the messages arrive.

use crate::helpers::{bulk_items, numbers_from, read_handover_log, spawn_in, test_dir, toml_path};

/// Clock granularity and scheduling noise allowed on a hand-over's logged time (ms).
const SLACK_MS: i64 = 50;

#[tokio::test]
async fn a_sender_rate_limit_holds_on_the_times_the_provider_saw() {
    // Arrange: the mock's sender takes 5 messages a second (governor, burst 1: one every
    // 200 ms).
    const PER_SECOND: usize = 5;
    const COUNT: usize = 15;
    let dir = test_dir();
    let log = dir.path().join("handover.log");
    let extra = format!(
        "[providers.mock]\nhandover_log = {}\nsender_per_second = {PER_SECOND}\n",
        toml_path(&log)
    );
    let app = spawn_in(dir, &extra, true).await;

    // Act: 15 messages at once, from the same (default) sender.
    let ids = app
        .send_bulk_ok(&bulk_items(
            &numbers_from(1000, COUNT as u32),
            "normal",
            "rate",
        ))
        .await;
    app.wait_all_handed_over(&ids).await;

    // Assert
    let mut times: Vec<i64> = read_handover_log(&log)
        .into_iter()
        .map(|(_, _, ms)| ms)
        .collect();
    assert_eq!(times.len(), COUNT, "each message handed over once");
    times.sort_unstable();
    let busiest = times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < start + 1000 - SLACK_MS)
                .count()
        })
        .max()
        .unwrap_or(0);
    let span = times[COUNT - 1] - times[0];
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("busiest second: {busiest}; span {span} ms; gaps {gaps:?}");
    assert!(
        busiest <= PER_SECOND,
        "{busiest} hand-overs within one second (limit {PER_SECOND}): {times:?}"
    );
    let least_span = (COUNT as i64 - 1) * 1000 / PER_SECOND as i64 - SLACK_MS;
    assert!(
        span >= least_span,
        "15 hand-overs in {span} ms; at 5/s they need {least_span} ms: {times:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_held_back_by_the_sender_rate_limit_is_handed_over_once() {
    // Arrange: 2 messages a second, and a claim lease (3 s) shorter than the wait in the
    // limiter for the later messages of the batch (the default 30 s lease against Twilio's
    // 1/s is the same situation for any backlog over 30 messages): only the worker's
    // heartbeat renewing its leases keeps them from being claimed again.
    const COUNT: usize = 10;
    let dir = test_dir();
    let db = dir.path().join("herald.db");
    let log = dir.path().join("handover.log");
    let extra = format!(
        "[providers.mock]\nhandover_log = {}\nsender_per_second = 2\n[workers]\nlease_seconds = 3\n",
        toml_path(&log)
    );
    let app = spawn_in(dir, &extra, true).await;

    // Act
    let ids = app
        .send_bulk_ok(&bulk_items(
            &numbers_from(1000, COUNT as u32),
            "normal",
            "lease",
        ))
        .await;
    app.wait_all_handed_over(&ids).await;
    let _dir = app.stop().await; // lets every delivery still in flight finish

    // Assert: each message was claimed for delivery once (the mock hides a second hand-over
    // of the same id, as its idempotency key would; Twilio has none and would send it twice).
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("the database opens");
    let attempts: Vec<(String, i64)> = sqlx::query_as("SELECT message_id, attempts FROM message")
        .fetch_all(&pool)
        .await
        .expect("attempts");
    pool.close().await;
    assert_eq!(
        read_handover_log(&log).len(),
        COUNT,
        "the mock accepted each once"
    );
    let repeated: Vec<&(String, i64)> = attempts.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        repeated.is_empty(),
        "messages sent to the provider more than once (attempts): {repeated:?}"
    );
}
