//! Sender rate limits (SPEC §4), judged on the times the provider saw the messages arrive.

use crate::helpers::{bulk_items, numbers_from, read_handover_log, spawn_in, test_dir, toml_path};

/// Clock granularity and scheduling noise allowed on a hand-over's logged time (ms).
const SLACK_MS: i64 = 30;

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
    for id in &ids {
        app.wait_for(id, |s| matches!(s, "sent" | "delivered" | "read"))
            .await;
    }

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
