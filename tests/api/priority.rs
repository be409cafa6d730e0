//! Priority lanes (SPEC §4): an urgent message is not stuck behind a low backlog, and a low
//! backlog is not starved by urgent traffic. Both build the backlog with workers off, then
//! start workers on the same database and read the order of hand-overs from the mock's log.

use crate::helpers::{
    PATIENCE, bulk_items, eventually, handed_over, number, numbers_from, read_handover_log,
    spawn_in, test_dir, toml_path,
};
use std::collections::HashSet;

#[tokio::test]
async fn an_urgent_message_overtakes_a_low_backlog() {
    // Arrange: 2,000 low messages waiting, then one urgent message, created last.
    const BATCH: usize = 64;
    let app = spawn_in(test_dir(), "", false).await;
    let backlog = app
        .send_bulk_ok(&bulk_items(&numbers_from(1000, 2000), "low", "backlog"))
        .await;
    let urgent = app
        .send_bulk_ok(&bulk_items(&[number("0999")], "urgent", "urgent"))
        .await
        .remove(0);
    let dir = app.stop().await;
    let log = dir.path().join("handover.log");
    let extra = format!(
        "[providers.mock]\nhandover_log = {}\n[queue]\nbatch_size = {BATCH}\n",
        toml_path(&log)
    );

    // Act: workers start on that queue.
    let app = spawn_in(dir, &extra, true).await;
    app.wait_for(&urgent, handed_over).await;

    // Assert: it was handed over within the first claim, ahead of almost all the backlog.
    let order: Vec<String> = read_handover_log(&log)
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let position = order
        .iter()
        .position(|id| *id == urgent)
        .expect("the urgent message is in the log");
    eprintln!(
        "urgent hand-over position: {position} of {} logged so far",
        order.len()
    );
    assert!(
        position < BATCH,
        "the urgent message was hand-over #{position}, behind {position} low ones (batch size {BATCH})"
    );
    let backlog: HashSet<&String> = backlog.iter().collect();
    assert!(
        order[..position].iter().all(|id| backlog.contains(id)),
        "only backlog before it"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_low_backlog_still_drains_while_urgent_traffic_flows() {
    // Arrange: 300 low messages, then 1,500 urgent ones created after them.
    const BATCH: usize = 32;
    let app = spawn_in(test_dir(), "", false).await;
    let low = app
        .send_bulk_ok(&bulk_items(&numbers_from(1000, 300), "low", "low"))
        .await;
    let urgent = app
        .send_bulk_ok(&bulk_items(&numbers_from(2000, 1500), "urgent", "urgent"))
        .await;
    let dir = app.stop().await;
    let log = dir.path().join("handover.log");
    let extra = format!(
        "[providers.mock]\nhandover_log = {}\n[queue]\nbatch_size = {BATCH}\n",
        toml_path(&log)
    );

    // Act: workers start; wait until everything was handed over.
    let app = spawn_in(dir, &extra, true).await;
    let total = low.len() + urgent.len();
    let order: Vec<String> = eventually("every message to be handed over", PATIENCE, || {
        let log = log.clone();
        async move {
            let lines = read_handover_log(&log);
            (lines.len() >= total).then(|| lines.into_iter().map(|(id, _, _)| id).collect())
        }
    })
    .await;

    // Assert: low messages were handed over from the start and all along, never more than
    // two claims' worth of urgent ones in a row, although 1,500 urgent ones were waiting.
    let low: HashSet<&String> = low.iter().collect();
    let urgent: HashSet<&String> = urgent.iter().collect();
    assert_eq!(order.len(), total, "each message handed over once");
    assert!(
        order
            .iter()
            .all(|id| low.contains(id) || urgent.contains(id)),
        "only ours"
    );
    let low_positions: Vec<usize> = (0..order.len())
        .filter(|i| low.contains(&order[*i]))
        .collect();
    let first_low = low_positions[0];
    let longest_wait = std::iter::once(first_low)
        .chain(low_positions.windows(2).map(|w| w[1] - w[0] - 1))
        .max()
        .unwrap_or(0);
    let last_low = *low_positions.last().unwrap();
    let early = 2 * BATCH;
    let low_early = low_positions.iter().filter(|i| **i < early).count();
    eprintln!(
        "first low at #{first_low}; {low_early} low among the first {early}; longest run of \
         urgent hand-overs while low waited: {longest_wait}; last low at #{last_low} of {total}"
    );
    assert!(
        first_low < early,
        "the first low message was hand-over #{first_low}: low waited for urgent"
    );
    assert!(
        longest_wait < early,
        "{longest_wait} urgent hand-overs in a row while low messages waited (batch size {BATCH})"
    );
    app.stop().await;
}

/// Sends 150 low messages through a 20/s sender, then 10 urgent ones, and returns how many
/// low ones were handed over after the urgent ones were accepted and before the last of them.
async fn low_handed_over_ahead_of_urgent(extra: &str) -> usize {
    // Arrange: the sender takes 20 messages a second; 150 low ones are being worked off.
    const PER_SECOND: u32 = 20;
    const URGENT: usize = 10;
    let dir = test_dir();
    let log = dir.path().join("handover.log");
    let extra = format!(
        "[providers.mock]\nhandover_log = {}\nsender_per_second = {PER_SECOND}\n{extra}",
        toml_path(&log)
    );
    let app = spawn_in(dir, &extra, true).await;
    let backlog = app
        .send_bulk_ok(&bulk_items(&numbers_from(1000, 150), "low", "backlog"))
        .await;
    eventually("the backlog to start flowing", PATIENCE, || {
        let log = log.clone();
        async move { (read_handover_log(&log).len() >= 5).then_some(()) }
    })
    .await;

    // Act: 10 urgent messages arrive.
    let urgent = app
        .send_bulk_ok(&bulk_items(
            &numbers_from(2000, URGENT as u32),
            "urgent",
            "urgent",
        ))
        .await;
    let handed_before = read_handover_log(&log).len();
    let order: Vec<String> = eventually(
        "the urgent messages to be handed over",
        PATIENCE * 2,
        || {
            let (log, urgent) = (log.clone(), urgent.clone());
            async move {
                let ids: Vec<String> = read_handover_log(&log)
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .collect();
                urgent.iter().all(|u| ids.contains(u)).then_some(ids)
            }
        },
    )
    .await;

    // Assert: once accepted, they waited for the limiter's next slots, not for the backlog.
    let backlog: HashSet<&String> = backlog.iter().collect();
    let last_urgent = urgent
        .iter()
        .filter_map(|u| order.iter().position(|id| id == u))
        .max()
        .expect("in the log");
    let overtaken_by = order[handed_before..=last_urgent]
        .iter()
        .filter(|id| backlog.contains(id))
        .count();
    eprintln!(
        "urgent ones accepted after {handed_before} hand-overs; the last handed over as \
         #{last_urgent}: {overtaken_by} low ones went before it ({} in the backlog)",
        backlog.len()
    );
    app.stop().await;
    overtaken_by
}

#[tokio::test]
async fn urgent_messages_overtake_a_backlog_held_back_by_the_sender_rate_limit() {
    let overtaken_by = low_handed_over_ahead_of_urgent("").await;
    assert!(
        overtaken_by <= 5,
        "{overtaken_by} low messages were handed over after the urgent ones were accepted"
    );
}

#[tokio::test]
async fn urgent_messages_overtake_a_rate_limited_backlog_deeper_than_the_workers() {
    // Few delivery slots and a small claim buffer: most of the backlog waits in the database
    // and in the buffer, not at the rate limiter, so the buffer must be topped up and ordered.
    let overtaken_by =
        low_handed_over_ahead_of_urgent("[workers]\nconcurrency = 4\n[queue]\nbatch_size = 16\n")
            .await;
    assert!(
        overtaken_by <= 6,
        "{overtaken_by} low messages were handed over after the urgent ones were accepted"
    );
}
